"""Every URL of the app: the pages, the live log, and the Manage pages under /manage/.
Manage edit pages end in /edit/ so that an environment or repository named "new"
cannot collide with the creation page."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import streams
from .api import ui as api_ui
from .views import audit, badges, dashboard, deploy, deployment, environments, insights, manage, placements

manage_urlpatterns = [
    path("", manage.manage_home, name="manage_home"),
    path("repositories/new/", manage.repository_new, name="manage_repository_new"),
    path("repositories/<slug:name>/edit/", manage.repository_edit, name="manage_repository_edit"),
    path("environments/new/", manage.environment_new, name="manage_environment_new"),
    path("environments/<slug:name>/edit/", manage.environment_edit, name="manage_environment_edit"),
    path(
        "environments/<slug:name>/test-connection",
        manage.environment_test_connection,
        name="manage_environment_test_connection",
    ),
    path("environments/<slug:name>/variables/", manage.variable_set, name="manage_variable_set"),
    path(
        "environments/<slug:name>/variables/<int:pk>/delete",
        manage.variable_delete,
        name="manage_variable_delete",
    ),
    path("environments/<slug:name>/freeze/", manage.freeze_add, name="manage_freeze_add"),
    path(
        "environments/<slug:name>/freeze/<int:pk>/delete", manage.freeze_delete, name="manage_freeze_delete"
    ),
    path("placements/new/", manage.placement_new, name="manage_placement_new"),
    path(
        "placements/<slug:repository>/<slug:environment>/edit/",
        manage.placement_edit,
        name="manage_placement_edit",
    ),
    path(
        "placements/<slug:repository>/<slug:environment>/variables/",
        manage.placement_variable_set,
        name="manage_placement_variable_set",
    ),
    path(
        "placements/<slug:repository>/<slug:environment>/variables/<int:pk>/delete",
        manage.placement_variable_delete,
        name="manage_placement_variable_delete",
    ),
    path("users/", manage.users, name="manage_users"),
    path("users/<int:pk>/roles", manage.user_roles, name="manage_user_roles"),
]

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("events/placements", dashboard.dashboard_events, name="dashboard_events"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("deploy/", deploy.deploy, name="deploy"),
    path("deployments/", dashboard.history, name="history"),
    path("deployments/<int:pk>/", deployment.deployment_detail, name="deployment_detail"),
    path("deployments/<int:pk>/events", streams.deployment_events, name="deployment_events"),
    path("deployments/<int:pk>/log.txt", streams.deployment_log_download, name="deployment_log"),
    path(
        "deployments/<int:pk>/log/earlier", deployment.deployment_log_earlier, name="deployment_log_earlier"
    ),
    path("deployments/<int:pk>/log/search", streams.deployment_log_search, name="deployment_log_search"),
    path("deployments/<int:pk>/cancel", deployment.deployment_cancel, name="deployment_cancel"),
    path(
        "deployments/<int:pk>/approve",
        deployment.deployment_decide,
        {"decision": "approve"},
        name="deployment_approve",
    ),
    path(
        "deployments/<int:pk>/reject",
        deployment.deployment_decide,
        {"decision": "reject"},
        name="deployment_reject",
    ),
    path("approvals/", environments.approvals, name="approvals"),
    path("audit/", audit.audit_log, name="audit"),
    path("insights/", insights.insights, name="insights"),
    path("badges/<slug:repository>/<slug:environment>.svg", badges.placement_badge, name="placement_badge"),
    path("environments/<slug:name>/", environments.environment_detail, name="environment_detail"),
    path("environments/<slug:name>/lock", environments.environment_lock, name="environment_lock"),
    path("environments/<slug:name>/unlock", environments.environment_unlock, name="environment_unlock"),
    path("environments/<slug:name>/rollback", environments.environment_rollback, name="environment_rollback"),
    path("environments/<slug:name>/promote", environments.environment_promote, name="environment_promote"),
    path("apps/<slug:repository>/<slug:environment>/", placements.placement_detail, name="placement_detail"),
    path("apps/<slug:repository>/<slug:environment>/lock", placements.placement_lock, name="placement_lock"),
    path(
        "apps/<slug:repository>/<slug:environment>/unlock",
        placements.placement_unlock,
        name="placement_unlock",
    ),
    path("manage/", include(manage_urlpatterns)),
    path("tokens/", api_ui.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke", api_ui.token_revoke, name="token_revoke"),
    path("api/v1/", include("deployments.api.urls")),
]
