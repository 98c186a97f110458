from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("deployments.webhooks.urls")),
    path("", include("deployments.notifications.urls")),
    path("", include("deployments.urls")),
]
