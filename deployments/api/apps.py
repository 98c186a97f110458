from django.apps import AppConfig


class ApiConfig(AppConfig):
    # An app of its own, so its migrations never interleave with the deployments app's.
    name = "deployments.api"
    label = "api"
    verbose_name = "Shipmate API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the OpenAPI extension)
