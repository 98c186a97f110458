"""Rollout targets: one module per kind, all behind the Target protocol of `base`."""

from __future__ import annotations

from typing import Any

from ..base import Target, TargetError


def build_target(kind: str, *, name: str, settings: dict[str, Any], **extra: Any) -> Target:
    """Make the target for an environment.

    For "docker", `extra` may hold a ready `client`; other extras are meant for other
    kinds (a kubeconfig, say) and are ignored. Imports are lazy so a worker that only
    deploys to Docker never loads the Kubernetes client, and the other way round.
    """
    if kind == "docker":
        from ..docker_client import connect
        from .docker import DockerTarget

        # connect() pings, so an engine that is down fails here with TargetError.
        client = extra.get("client") or connect(settings.get("docker_host") or None)
        return DockerTarget.from_settings(client, name, settings)
    if kind == "kubernetes":
        from .kubernetes import KubernetesTarget

        return KubernetesTarget.from_settings(name=name, settings=settings, **extra)
    raise TargetError(f"unknown target kind {kind!r}")
