"""The push stage: push the built tag and return the immutable `repository@sha256:…` reference."""

from __future__ import annotations

import re
from typing import Any

import docker

from .base import LogFn, StageError, StopFn
from .docker_client import ENGINE_ERRORS, follow_stream, stage_failure

# Per-layer progress ticks; the rest ("Pushed", "Layer already exists", the summary) is worth a line.
_NOISY_STATUSES = {"Preparing", "Waiting", "Pushing"}
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
)


def push_image(
    client: docker.DockerClient,
    *,
    repository: str,
    tag: str,
    log: LogFn,
    should_stop: StopFn,
    auth_config: dict[str, Any] | None = None,
) -> str:
    """Push `repository:tag` (already tagged locally) and return `repository@<digest>`."""
    target = f"{repository}:{tag}"
    log(f"Pushing {target}")
    digest = ""
    try:
        stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config)
        for chunk in follow_stream(stream, should_stop):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                raise StageError(_failure(repository, detail.get("message") or chunk.get("error") or ""))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = aux["Digest"]
            status = chunk.get("status")
            if status and status not in _NOISY_STATUSES:
                layer = chunk.get("id")
                log(f"{layer}: {status}" if layer and layer != tag else status)
    except ENGINE_ERRORS as exc:
        message = _failure(repository, str(getattr(exc, "explanation", None) or exc))
        raise stage_failure("push", exc, message) from exc
    if not _DIGEST_RE.match(digest):
        raise StageError(f"push to {repository} finished without reporting a digest")
    reference = f"{repository}@{digest}"
    log(f"Pushed {reference}")
    return reference


def _failure(repository: str, message: str) -> str:
    message = message.strip() or "unknown error"
    lowered = message.lower()
    for reason in _UNREACHABLE:
        if reason in lowered:
            return f"push to {repository} failed: registry unreachable ({reason})"
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        return f"push to {repository} failed: access denied ({message[:300]})"
    return f"push to {repository} failed: {message[:500]}"
