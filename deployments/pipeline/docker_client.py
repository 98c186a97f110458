"""Connecting to a Docker engine, and reading its JSON streams so that a cancel is noticed."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests
import urllib3
from docker.errors import DockerException
from docker.types.daemon import CancellableStream

from .base import Cancelled, LogFn, StageError, StopFn, TargetError

# How often a blocked stream checks should_stop: builds can be silent for minutes.
POLL_SECONDS = 0.25
# docker-py lets the errors of requests and urllib3 through unwrapped, and a socket
# closed mid-stream surfaces as a plain OSError.
ENGINE_ERRORS = (
    DockerException,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)
_GONE_ERRORS = (
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    ConnectionError,
    FileNotFoundError,
)
# Reconnecting to a lost engine: wait 0.2, 0.4, 0.8, 1.6, 2 s (about 5 s), then give up.
RECONNECT_DELAYS = (0.2, 0.4, 0.8, 1.6, 2.0)


class EngineLost(StageError):
    """The Docker engine stopped answering in the middle of a stage."""


def engine_gone(exc: BaseException) -> bool:
    """Whether `exc` means the engine's socket went away, as opposed to an API refusal."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return False
    return isinstance(exc, _GONE_ERRORS)


def engine_lost(stage: str, exc: BaseException | None = None) -> EngineLost:
    detail = f" ({_short(exc)})" if exc is not None else ""
    return EngineLost(f"the Docker engine went away during the {stage} stage{detail}")


def stage_failure(stage: str, exc: BaseException, message: str) -> StageError:
    """The error a stage raises for an engine error: lost engine, or `message`."""
    return engine_lost(stage, exc) if engine_gone(exc) else StageError(message)


def connect(base_url: str | None, *, timeout: int = 120) -> docker.DockerClient:
    """A client for the engine at `base_url` (empty: the environment's DOCKER_HOST), checked with a ping."""
    where = base_url or "DOCKER_HOST"
    url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    # Checked here because docker-py leaks the socket when a unix connect fails.
    if url.startswith("unix://") and not Path(url.removeprefix("unix://")).is_socket():
        raise TargetError(f"Docker engine at {where} is unreachable: No such file or directory")
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise TargetError(f"Docker engine at {where} is unreachable: {_short(exc)}") from exc
    return client


def _short(exc: BaseException) -> str:
    text = str(exc)
    # requests nests the useful part ("Connection refused", "No such file") at the end.
    for marker in (
        "Connection refused",
        "No such file or directory",
        "Name or service not known",
        "Connection aborted",
        "Connection broken",
        "Connection reset by peer",
    ):
        if marker in text:
            return marker
    return text[:300]


class LineLog:
    """Engines split output at arbitrary points; hand only complete, non-blank lines to `log`."""

    def __init__(self, log: LogFn) -> None:
        self._log = log
        self._pending: list[str] = []  # the start of a line still being written

    def feed(self, text: str) -> None:
        # Linear in the output: a long line that arrives in many small chunks is joined
        # once, not copied again with every chunk.
        if "\n" not in text:
            if text:
                self._pending.append(text)
            return
        first, *lines, last = text.split("\n")
        self._emit("".join([*self._pending, first]))
        for line in lines:
            self._emit(line)
        self._pending = [last] if last else []

    def flush(self) -> None:
        if self._pending:
            self._emit("".join(self._pending))
            self._pending = []

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._log(line)


_END = object()
T = TypeVar("T")


def follow_stream(stream: Iterator[T], should_stop: StopFn) -> Iterator[T]:
    """Yield the chunks of a docker-py stream; on should_stop close it and raise Cancelled.

    The stream is read in a thread so that a silent build step still lets us poll should_stop.
    """
    chunks: queue.Queue[Any] = queue.Queue(maxsize=1000)

    def reader() -> None:
        try:
            for chunk in stream:
                chunks.put(chunk)
        except BaseException as exc:  # handed to the caller's thread
            chunks.put(exc)
        finally:
            chunks.put(_END)

    thread = threading.Thread(target=reader, name="docker-stream", daemon=True)
    thread.start()
    try:
        while True:
            if should_stop():
                raise Cancelled()
            try:
                item = chunks.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if thread.is_alive():
            close_stream(stream)
            # Unblock a reader stuck on a full queue so it can see the closed socket;
            # bounded, because a reader we could not unblock is a daemon thread anyway.
            deadline = time.monotonic() + 5
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    chunks.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    pass


def close_stream(stream: Iterator[Any]) -> None:
    """Shut down the HTTP response behind a docker-py stream generator; the engine then stops the work.

    docker-py's build and push return bare generators whose frame holds the response.
    """
    if isinstance(stream, CancellableStream):
        stream.close()
        return
    frame = getattr(stream, "gi_frame", None)
    response = frame.f_locals.get("response") if frame is not None else None
    if response is None:
        return
    try:
        CancellableStream(stream, response).close()
    except (OSError, DockerException, AttributeError):
        response.close()
