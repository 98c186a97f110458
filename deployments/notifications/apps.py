from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "deployments.notifications"
    label = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import hooks  # noqa: F401  (connects the receivers of deployments.services.events)
