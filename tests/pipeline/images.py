"""Tiny FROM-scratch busybox images for tests, pushed to the test registry.

Docker Hub is unreachable here, so every image is the static busybox from the host
plus a few files.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import docker

BUSYBOX = "/bin/busybox"


def unique_name(prefix: str = "shipmate-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def build_and_push(
    client: docker.DockerClient,
    registry: str,
    repository: str,
    tag: str,
    *,
    cmd: list[str],
    files: dict[str, str] | None = None,
) -> str:
    """Build busybox + `files` (path -> text) with `cmd`; return `registry/repository@sha256:…`."""
    dockerfile = "\n".join(
        [
            "FROM scratch",
            "COPY busybox /bin/busybox",
            "COPY root/ /",
            'ENTRYPOINT ["/bin/busybox"]',
            f"CMD {json.dumps(cmd)}",
        ]
    )
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        _add(tar, "Dockerfile", dockerfile.encode())
        tar.add(BUSYBOX, arcname="busybox")
        _add_dir(tar, "root")
        for path, text in (files or {"etc/shipmate-test": tag}).items():
            _add(tar, f"root/{path.lstrip('/')}", text.encode())
    context.seek(0)
    reference = f"{registry}/{repository}:{tag}"
    for chunk in client.api.build(
        fileobj=context, custom_context=True, tag=reference, rm=True, network_mode="none", decode=True
    ):
        if "error" in chunk:
            raise RuntimeError(f"test image build failed: {chunk['error']}")
    digest = None
    for chunk in client.api.push(f"{registry}/{repository}", tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"test image push failed: {chunk['error']}")
        digest = (chunk.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise RuntimeError(f"push of {reference} reported no digest")
    return f"{registry}/{repository}@{digest}"


def httpd_cmd(www: str = "/www") -> list[str]:
    """Serve `www` on 127.0.0.1:$PORT in the foreground, as the demo app does."""
    return ["sh", "-c", f"exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h {www}"]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)
