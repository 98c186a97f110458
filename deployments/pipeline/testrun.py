"""The test stage: run the repository's test command inside the image it was built into."""

from __future__ import annotations

import codecs
import shlex
import time
from dataclasses import dataclass

import docker
import requests
from docker.types.daemon import CancellableStream

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


@dataclass(frozen=True)
class ContainerLimits:
    """What a test container may use. The root filesystem is read-only and /tmp is a
    tmpfs of `scratch` bytes (HOME and TMPDIR point there), because overlay2 on ext4
    (the usual engine) has no per-container disk quota: a test that writes without end
    fills its scratch space, not the engine's disk."""

    cpus: float = 1.0
    memory: str = "512m"
    pids: int = 256
    scratch: str = "256m"
    read_only: bool = True

    def describe(self) -> str:
        disk = f"read-only root, {self.scratch} in /tmp" if self.read_only else f"{self.scratch} in /tmp"
        return f"{self.cpus:g} CPU, {self.memory} memory, {self.pids} processes, {disk}"


def run_tests(
    client: docker.DockerClient,
    *,
    image: str,
    command: str,
    timeout: float,
    log: LogFn,
    should_stop: StopFn,
    limits: ContainerLimits = ContainerLimits(),
) -> None:
    """Run `command` in `image` with no network and no variables, within `limits`;
    raise StageError unless it exits 0. Every line the container wrote reaches `log`:
    if the engine's log stream ends before the output does, the rest is read back."""
    if not command.strip():
        log("no test command configured; skipping")
        return
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise StageError(f"test command cannot be parsed: {exc}") from exc
    log(f"Running tests: {shlex.join(argv)} ({limits.describe()})")
    deadline = time.monotonic() + timeout
    timed_out = False

    def stop() -> bool:
        nonlocal timed_out
        if should_stop():
            return True
        timed_out = time.monotonic() > deadline
        return timed_out

    container = None
    output = _Output(log)
    try:
        # The image's entrypoint stays: the command is its arguments, as with `docker run`.
        container = client.containers.create(
            image,
            command=argv,
            network_mode="none",
            init=True,
            # One terminal for stdout and stderr: the engine gets them as one stream, in
            # the order they were written (two pipes are read apart and can swap lines),
            # and test tools print their colours, which the log page renders.
            tty=True,
            mem_limit=limits.memory,
            memswap_limit=limits.memory,  # no swap beyond the memory limit
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            read_only=limits.read_only,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.scratch},mode=1777"},
            environment={"HOME": "/tmp", "TMPDIR": "/tmp"},
            security_opt=["no-new-privileges"],
            labels={TEST_LABEL: "test"},
            detach=True,
        )
        container.start()
        try:
            try:
                for chunk in follow_stream(_log_stream(client, container.id, follow=True), stop):
                    output.feed(chunk)
            except ENGINE_ERRORS as exc:
                # A log stream cut off (an engine restart, a proxy) while the container
                # may still run: wait for it, then read back what the stream missed.
                if not engine_gone(exc):
                    raise
            exit_code = _wait(client, container.id, deadline)
        except Cancelled:
            _kill(container)
            output.flush()
            if timed_out:
                raise StageError(_timed_out(timeout, limits)) from None
            raise
        output.flush()
        if exit_code is None:
            _kill(container)
            raise StageError(_timed_out(timeout, limits))
        recovered = output.read_rest(client, container.id)
        if recovered:
            log(
                f"(the engine's log stream ended early: {recovered} more line(s) read back from the container)"
            )
        if exit_code != 0:
            raise StageError(
                f"tests failed with exit code {exit_code}{_limit_hit(client, container.id, output, limits)}"
            )
        log(f"Tests passed ({output.count} line(s) of output)")
    except ENGINE_ERRORS as exc:
        message = f"test run failed: {getattr(exc, 'explanation', None) or exc}"
        raise stage_failure("test", exc, message) from exc
    finally:
        if container is not None:
            _remove(container)


class _Output:
    """The test container's output as the engine serves it, counted in bytes: after the
    container exited, a second read of the whole log skips the bytes the first one got
    and passes on the rest, so an engine stream that ended early loses nothing."""

    def __init__(self, log: LogFn) -> None:
        self._log = log
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._lines = LineLog(self._line)
        self.received = 0  # bytes of the log passed on so far
        self.count = 0  # lines, blank ones included
        self.tail: list[str] = []  # the last lines, for naming a limit the tests hit

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        self._lines.feed(self._decoder.decode(chunk))

    def flush(self) -> None:
        self._lines.feed(self._decoder.decode(b"", final=True))
        self._lines.flush()

    def _line(self, text: str) -> None:
        self.count += 1
        self.tail = [*self.tail[-19:], text]
        self._log(text)

    def read_rest(self, client: docker.DockerClient, container_id: str) -> int:
        """Read the exited container's log again and pass on what the first read missed.
        Returns the number of lines recovered. Memory stays flat: skipped bytes are
        counted, not kept."""
        skip, lines_before = self.received, self.count
        for chunk in _log_stream(client, container_id, follow=False):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            self.feed(chunk[skip:])
            skip = 0
        self.flush()
        return self.count - lines_before


def _log_stream(client: docker.DockerClient, container_id: str, *, follow: bool) -> CancellableStream:
    """A terminal container's log, in the chunks the engine sends: docker-py iterates a
    terminal's log one byte at a time (a 3 MB line took 10 s of CPU)."""
    api = client.api
    response = api._get(
        api._url("/containers/{0}/logs", container_id),
        params={"stdout": 1, "stderr": 1, "follow": int(follow), "tail": "all"},
        stream=True,
    )
    api._raise_for_status(response)
    if follow:  # a quiet test must not time the stream out
        api._disable_socket_timeout(api._get_raw_response_socket(response))
    return CancellableStream(response.iter_content(chunk_size=None), response)


def _timed_out(timeout: float, limits: ContainerLimits) -> str:
    return (
        f"tests timed out after {timeout:g} s (SHIPMATE_TEST_TIMEOUT; "
        f"they had {limits.cpus:g} CPU, SHIPMATE_TEST_CPUS)"
    )


def _limit_hit(
    client: docker.DockerClient, container_id: str, output: _Output, limits: ContainerLimits
) -> str:
    """Which limit the failed tests ran into, as far as the engine and their last lines tell."""
    if client.api.inspect_container(container_id)["State"].get("OOMKilled"):
        return f" (out of memory: the limit is {limits.memory}, SHIPMATE_TEST_MEMORY)"
    tail = "\n".join(output.tail)
    if "No space left on device" in tail:
        return f" (out of scratch space: {limits.scratch} in /tmp, SHIPMATE_TEST_SCRATCH)"
    if limits.read_only and "Read-only file system" in tail:
        return " (the root filesystem is read-only: write to /tmp, or set SHIPMATE_TEST_READ_ONLY=false)"
    if "Resource temporarily unavailable" in tail or "can't fork" in tail:
        return f" (process limit {limits.pids}, SHIPMATE_TEST_PIDS)"
    return ""


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
