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
        from .docker import DockerTarget

        client = extra.get("client") or _docker_client(settings.get("docker_host") or "")
        return DockerTarget.from_settings(client, name, settings)
    if kind == "kubernetes":
        from .kubernetes import KubernetesTarget

        return KubernetesTarget.from_settings(name=name, settings=settings, **extra)
    raise TargetError(f"unknown target kind {kind!r}")


def _docker_client(docker_host: str) -> Any:
    import docker
    from docker.errors import DockerException

    try:
        if docker_host:
            return docker.DockerClient(base_url=docker_host)
        return docker.from_env()
    except DockerException as exc:
        # The client asks the engine for its API version on creation, so an engine
        # that is down already fails here.
        where = docker_host or "DOCKER_HOST"
        raise TargetError(f"cannot reach the Docker engine at {where}: {exc}") from None
