from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from . import signals  # noqa: F401
        from .pipeline import outbound

        # The pipeline imports no Django: it asks this source for the policy each time it
        # connects, so the worker and the forms judge addresses by the same setting.
        outbound.set_policy_source(lambda: outbound.OutboundPolicy.parse(settings.OUTBOUND_ALLOW_INTERNAL))
