from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from deployments import streams
from deployments.views import audit, dashboard, deploy, deployment, environments, placements

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
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
    path("manage/", include("deployments.urls_manage")),
    path("admin/", admin.site.urls),
]
