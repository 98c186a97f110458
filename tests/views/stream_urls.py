"""Just the stream views, so their tests do not depend on the rest of the site's urls."""

from django.urls import path

from deployments import streams

urlpatterns = [
    path("deployments/<int:pk>/events", streams.deployment_events, name="deployment_events"),
    path("deployments/<int:pk>/log.txt", streams.deployment_log_download, name="deployment_log"),
]
