"""The build stage: docker build through the SDK, streaming the builder's output line by line."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import docker

from .base import LogFn, StageError, StopFn
from .docker_client import ENGINE_ERRORS, LineLog, follow_stream, stage_failure
from .git import redact_url

# Name of the copy we place in the context when the Dockerfile lives elsewhere.
EXTERNAL_DOCKERFILE = ".shipmate.Dockerfile"


def oci_labels(source_url: str, revision: str, ref: str) -> dict[str, str]:
    """Standard OCI annotations so an image can be traced back to its commit."""
    return {
        "org.opencontainers.image.source": redact_url(source_url),
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.ref.name": ref,
        "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def dockerfile_labels(dockerfile_repo_url: str, revision: str) -> dict[str, str]:
    """Where the Dockerfile came from, when it lives in its own repository."""
    if not dockerfile_repo_url:
        return {}
    return {
        "dev.shipmate.dockerfile.source": redact_url(dockerfile_repo_url),
        "dev.shipmate.dockerfile.revision": revision,
    }


def build_image(
    client: docker.DockerClient,
    *,
    context_dir: Path,
    dockerfile: Path,
    tag: str,
    labels: dict[str, str],
    network_mode: str,
    log: LogFn,
    should_stop: StopFn,
    build_args: dict[str, str] | None = None,
) -> str:
    """Build `dockerfile` with `context_dir` as context, tag it, and return the image id."""
    context_dir = context_dir.resolve()
    dockerfile = dockerfile.resolve()
    if not dockerfile.is_file():
        raise StageError(f"Dockerfile {dockerfile.name} is not a file")
    if context_dir not in dockerfile.parents:
        # A Dockerfile from a separate repository: the builder only sees the context.
        dockerfile = _place_external_dockerfile(dockerfile, context_dir / EXTERNAL_DOCKERFILE)
    relative = dockerfile.relative_to(context_dir).as_posix()
    log(f"Building {tag} (network: {network_mode})")
    lines = LineLog(log)
    image_id = ""
    try:
        stream = client.api.build(
            path=str(context_dir),
            dockerfile=relative,
            tag=tag,
            labels=labels,
            buildargs=build_args or None,
            network_mode=network_mode,
            decode=True,
            rm=True,
            forcerm=True,
            pull=False,
        )
        for chunk in follow_stream(stream, should_stop):
            if "stream" in chunk:
                lines.feed(chunk["stream"])
            if "error" in chunk or "errorDetail" in chunk:
                lines.flush()
                detail = chunk.get("errorDetail") or {}
                message = (detail.get("message") or chunk.get("error") or "unknown error").strip()
                raise StageError(f"build failed: {message}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
        lines.flush()
        if not image_id:
            image_id = client.api.inspect_image(tag)["Id"]
    except ENGINE_ERRORS as exc:
        lines.flush()
        raise stage_failure("build", exc, f"build failed: {_explain(exc)}") from exc
    log(f"Built {tag} ({image_id[:19]})")
    return image_id


def _place_external_dockerfile(source: Path, copy: Path) -> Path:
    """Copy `source` to `copy` inside the context without following anything the
    repository may have planted there: a symlink at that name would otherwise make the
    worker overwrite whatever file it points at."""
    if copy.is_symlink() or copy.exists():
        if copy.is_dir() and not copy.is_symlink():
            raise StageError(f"the repository has a directory named {EXTERNAL_DOCKERFILE}")
        copy.unlink()
    content = source.read_bytes()
    try:
        fd = os.open(copy, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise StageError(f"cannot place the Dockerfile in the build context: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    return copy


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)[:500]
