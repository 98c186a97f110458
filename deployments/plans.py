"""From models to what the pipeline runs: one placement's target."""

from __future__ import annotations

from django.conf import settings as django_settings

from .models import Deployment, Placement
from .pipeline.base import Target
from .pipeline.targets import build_target


def placement_of(deployment: Deployment) -> Placement:
    return Placement.objects.select_related("environment", "repository").get(
        environment_id=deployment.environment_id, repository_id=deployment.repository_id
    )


def target_for(placement: Placement, *, health_path: str | None = None) -> Target:
    """The target of one application in one environment."""
    settings = placement.effective_settings
    if placement.environment.target_kind == "docker":
        settings["allowed_bind_roots"] = django_settings.BIND_MOUNT_ROOTS
        if health_path:
            settings["health_path"] = health_path
    return build_target(
        placement.environment.target_kind,
        name=placement.target_name,
        settings=settings,
        kubeconfig=placement.environment.kubeconfig,
    )
