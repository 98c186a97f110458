"""Rollout targets: one module per kind, all behind the Target protocol of `base`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import Target, TargetError
from .settings import DockerSettings, KubernetesSettings, TargetSettings, parse_settings


def build_target(
    kind: str, *, name: str, settings: TargetSettings | Mapping[str, Any], **extra: Any
) -> Target:
    """Make the target for a placement from its parsed settings (a mapping is parsed here).

    For "docker", `extra` may hold a ready `client`; other extras are meant for other
    kinds (a kubeconfig, say) and are ignored. Imports are lazy so a worker that only
    deploys to Docker never loads the Kubernetes client, and the other way round.
    """
    if not isinstance(settings, TargetSettings):
        settings = parse_settings(kind, settings)
    if kind == "docker" and isinstance(settings, DockerSettings):
        from ..docker_client import connect
        from .docker import DockerTarget

        # connect() pings, so an engine that is down fails here with TargetError.
        client = extra.get("client") or connect(settings.docker_host or None)
        return DockerTarget.from_settings(client, name, settings)
    if kind == "kubernetes" and isinstance(settings, KubernetesSettings):
        from .kubernetes import KubernetesTarget

        return KubernetesTarget.from_settings(name=name, settings=settings, **extra)
    raise TargetError(f"settings of kind {settings.kind!r} given for a {kind!r} target")
