"""The test stage: run the repository's test command inside the image it was built into."""

from __future__ import annotations

import codecs
import shlex
import time

import docker
import requests

from .base import Cancelled, LogFn, StageError, StopFn
from .docker_client import (
    ENGINE_ERRORS,
    RECONNECT_DELAYS,
    LineLog,
    engine_gone,
    engine_lost,
    follow_stream,
    stage_failure,
)

TEST_LABEL = "dev.shipmate.role"


def run_tests(
    client: docker.DockerClient,
    *,
    image: str,
    command: str,
    timeout: float,
    log: LogFn,
    should_stop: StopFn,
    mem_limit: str = "512m",
    pids_limit: int = 256,
) -> None:
    """Run `command` in `image` with no network and no variables; raise StageError unless it exits 0."""
    if not command.strip():
        log("no test command configured; skipping")
        return
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise StageError(f"test command cannot be parsed: {exc}") from exc
    log(f"Running tests: {shlex.join(argv)}")
    deadline = time.monotonic() + timeout
    timed_out = False

    def stop() -> bool:
        nonlocal timed_out
        if should_stop():
            return True
        timed_out = time.monotonic() > deadline
        return timed_out

    container = None
    lines = LineLog(log)
    try:
        # The image's entrypoint stays: the command is its arguments, as with `docker run`.
        container = client.containers.create(
            image,
            command=argv,
            network_mode="none",
            init=True,
            mem_limit=mem_limit,
            pids_limit=pids_limit,
            security_opt=["no-new-privileges"],
            labels={TEST_LABEL: "test"},
            detach=True,
        )
        container.start()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in follow_stream(container.logs(stream=True, follow=True), stop):
                lines.feed(decoder.decode(chunk))
            exit_code = _wait(client, container.id, deadline)
        except Cancelled:
            _kill(container)
            lines.flush()
            if timed_out:
                raise StageError(f"tests timed out after {timeout:g} s") from None
            raise
        lines.flush()
        if exit_code is None:
            _kill(container)
            raise StageError(f"tests timed out after {timeout:g} s")
        if exit_code != 0:
            oom = client.api.inspect_container(container.id)["State"].get("OOMKilled")
            hint = f" (out of memory, limit {mem_limit})" if oom else ""
            raise StageError(f"tests failed with exit code {exit_code}{hint}")
        log("Tests passed")
    except ENGINE_ERRORS as exc:
        message = f"test run failed: {getattr(exc, 'explanation', None) or exc}"
        raise stage_failure("test", exc, message) from exc
    finally:
        if container is not None:
            _remove(container)


def _wait(client: docker.DockerClient, container_id: str, deadline: float) -> int | None:
    """The exit code, or None if the container still runs at `deadline`.

    An engine that stopped answering gets a few reconnects with growing pauses, then
    the stage fails with EngineLost: never a loop that retries a dead socket at once.
    """
    # The log stream usually ends at exit; this covers an engine that closed it early.
    delays = iter(RECONNECT_DELAYS)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            result = client.api.wait(container_id, timeout=max(1, min(remaining, 5)))
            return int(result["StatusCode"])
        except requests.exceptions.ReadTimeout:
            continue  # still running: the call itself blocked for its timeout
        except ENGINE_ERRORS as exc:
            if not engine_gone(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise engine_lost("test", exc) from exc
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))


def _kill(container: docker.models.containers.Container) -> None:
    try:
        container.kill()
    except ENGINE_ERRORS:
        pass  # already stopped, or the engine is gone


def _remove(container: docker.models.containers.Container) -> None:
    try:
        container.remove(force=True)
    except ENGINE_ERRORS:
        pass  # removal is cleanup; the stage result matters more
