"""Following a deployment's live log over server-sent events (`?format=text`).

Every event carries the log entry's id. After a dropped connection the request is
sent again with `Last-Event-ID` set to the last event received whole, and the server
resumes strictly after it: no line twice, none missing. A line is written only once
its event is complete, so half an event lost with the connection is never printed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import httpx

from .client import Api, Failure, error_message, unreachable

RETRIES = 8  # attempts in a row without an event before giving up
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 5.0
READ_TIMEOUT = 30.0  # the server sends a keepalive every 10 s


@dataclass
class Event:
    name: str = "message"
    data: list[bytes] = field(default_factory=list)
    id: str | None = None
    comment: bool = False


def parse(chunks: Iterator[bytes]) -> Iterator[Event]:
    """Events off a byte stream, comments (keepalives) included as `comment` events."""
    buffer = b""
    event = Event()
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.removesuffix(b"\r")
            if not line:
                if event.data or event.id is not None or event.name != "message":
                    yield event
                event = Event()
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if not name:
                yield Event(comment=True)
            elif name == b"data":
                event.data.append(value)
            elif name == b"event":
                event.name = value.decode()
            elif name == b"id":
                event.id = value.decode()


def follow(
    api: Api,
    pk: int,
    out: BinaryIO,
    note: Callable[[str], None],
    deadline: float | None = None,
) -> str | None:
    """Writes the log's lines to `out` as they come and progress to `note`; returns the
    final status from `event: end`, or None when `deadline` (time.monotonic()) passed."""
    last_id: str | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        try:
            with api.http.stream(
                "GET", f"deployments/{pk}/events", params={"format": "text"}, headers=headers, timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    raise Failure(error_message(response))
                for event in parse(response.iter_bytes()):
                    if deadline is not None and time.monotonic() > deadline:
                        return None
                    if event.comment:
                        continue
                    failures = 0
                    if event.id:
                        last_id = event.id
                    data = b"\n".join(event.data)
                    if event.name == "line":
                        out.write(data + b"\n")
                        out.flush()
                    elif event.name == "end":
                        return data.decode()
                    elif event.name == "status" or event.name.startswith("stage-"):
                        note(data.decode(errors="replace"))
        except (httpx.TransportError, httpx.StreamError) as exc:
            error: Exception = exc
        else:
            error = ConnectionError("the server closed the stream before its end")
        failures += 1
        if failures > RETRIES:
            raise unreachable(api.url, error)
        if deadline is not None and time.monotonic() > deadline:
            return None
        note(f"connection lost ({error.__class__.__name__}); resuming")
        time.sleep(min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX))
