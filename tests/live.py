"""Serving the real ASGI app and driving Debian's Chromium: shared by the browser
tests and the benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# Never Playwright's own browser download (nothing can be downloaded here), and no
# background traffic: the machine's network is loopback only.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 10.0


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now and that this process has not handed out before:
    the kernel may offer the same free port twice, and two environments of one test
    (say dev and stage, whose containers start later) must not share it."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@contextmanager
def serve_asgi() -> Iterator[str]:
    """pipeline_ui.asgi served by uvicorn in a thread of this process; yields its base URL."""
    import uvicorn

    from pipeline_ui.asgi import application

    port = free_port()
    config = uvicorn.Config(
        app=application,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        # An open event stream must not hold up the shutdown.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_coroutine(coro: Any) -> Any:
    """asyncio.run() in a thread of its own: the test's thread may already run an event
    loop (Playwright's sync API leaves one behind in the browser tests' thread)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
