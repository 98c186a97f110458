from django.urls import path, re_path

from . import views

urlpatterns = [
    re_path(
        r"^hooks/(?P<provider>github|gitlab|gitea)/(?P<placement_id>[0-9]+)$",
        views.receive,
        name="webhook_receive",
    ),
    path(
        "apps/<slug:repository>/<slug:environment>/webhook/secret",
        views.secret_regenerate,
        name="webhook_secret",
    ),
    path("apps/<slug:repository>/<slug:environment>/webhook/rules", views.rules_set, name="webhook_rules"),
]
