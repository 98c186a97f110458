"""A local HTTP receiver on 127.0.0.1 and a real Celery worker for the notifications queue."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of `answers` (then 200), or hangs
    while `hang` is set; records every request."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    hang: float = 0.0
    requests: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, f"{len(self.requests)} of {count} requests after {timeout} s"
        return self.requests


def verify(secret: str, received: Received, *, max_age: float = 300) -> bool:
    """What a receiver does: HMAC over '<timestamp>.<body>', and a fresh timestamp."""
    timestamp = received.headers["X-Shipmate-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    given = received.headers["X-Shipmate-Signature-256"]
    fresh = abs(time.time() - int(timestamp)) < max_age
    return fresh and hmac.compare_digest(given, f"sha256={expected}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            if state.hang:
                state.released.wait(state.hang)
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.released.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_settings(settings: Any) -> Any:
    settings.NOTIFY_BACKOFF = 0.05
    settings.NOTIFY_TIMEOUT = 2.0
    settings.NOTIFY_MAX_ATTEMPTS = 5
    return settings


@pytest.fixture
def notifications_worker(transactional_db: Any, notify_settings: Any) -> Iterator[Any]:
    """A real worker thread that consumes only the notifications queue, as the
    notifications worker of make run and compose.yaml does."""
    from celery.contrib.testing.worker import start_worker

    from pipeline_ui.celery import app

    app.control.purge()
    with start_worker(
        app,
        pool="solo",
        queues=["notifications"],
        hostname="notify-test@localhost",
        perform_ping_check=False,
        shutdown_timeout=30,
    ) as worker:
        yield worker


def wait_until(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met after {timeout} s")
