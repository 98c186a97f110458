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
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (its deadline): nobody to answer

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
    # Selecting the worker's queues changes the app's own selection, which a deployment
    # worker started later (celery_worker) would inherit: put it back afterwards.
    selected = app.amqp.queues._consume_from
    try:
        with start_worker(
            app,
            pool="solo",
            queues=["notifications"],
            hostname="notify-test@localhost",
            perform_ping_check=False,
            shutdown_timeout=30,
        ) as worker:
            yield worker
    finally:
        app.amqp.queues._consume_from = selected


@pytest.fixture
def notifier_process(transactional_db: Any, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Start `celery worker -Q notifications` as its own process on the test database,
    as make run and compose.yaml run it: nothing it does can hold the in-process
    deployment worker (two workers in one process share more than production does)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connection

    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> Path:
        log = tmp_path / "notifier.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
            **settings,
        }
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "pipeline_ui",
                        "worker",
                        "-Q",
                        "notifications",
                        "--pool=threads",
                        "--concurrency=4",
                        "-n",
                        f"notify-{os.getpid()}@localhost",
                        "--without-mingle",
                        "--without-gossip",
                        "--loglevel=INFO",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            )
        wait_until(lambda: "ready." in log.read_text(), 60, "notifications worker ready")
        return log

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met after {timeout} s")
