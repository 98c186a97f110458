from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import events, views

urlpatterns = [
    path("applications/", views.ApplicationList.as_view(), name="api_applications"),
    path("environments/", views.EnvironmentList.as_view(), name="api_environments"),
    path("environments/<slug:name>/", views.EnvironmentDetail.as_view(), name="api_environment"),
    path("environments/<slug:name>/lock", views.EnvironmentLock.as_view(), name="api_environment_lock"),
    path("environments/<slug:name>/unlock", views.EnvironmentUnlock.as_view(), name="api_environment_unlock"),
    path("environments/<slug:name>/rollback", views.EnvironmentRollback.as_view(), name="api_rollback"),
    path("environments/<slug:name>/promote", views.EnvironmentPromote.as_view(), name="api_promote"),
    path("placements/", views.PlacementList.as_view(), name="api_placements"),
    path("deployments/", views.DeploymentList.as_view(), name="api_deployments"),
    path("deployments/<int:pk>/", views.DeploymentDetail.as_view(), name="api_deployment"),
    path("deployments/<int:pk>/cancel", views.DeploymentCancel.as_view(), name="api_deployment_cancel"),
    path("deployments/<int:pk>/approve", views.DeploymentApprove.as_view(), name="api_deployment_approve"),
    path("deployments/<int:pk>/reject", views.DeploymentReject.as_view(), name="api_deployment_reject"),
    path("deployments/<int:pk>/log", views.DeploymentLog.as_view(), name="api_deployment_log"),
    path("deployments/<int:pk>/events", events.deployment_events, name="api_deployment_events"),
    path("locks/", views.LockList.as_view(), name="api_locks"),
    path("audit/", views.AuditList.as_view(), name="api_audit"),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
]
