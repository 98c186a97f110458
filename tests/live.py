"""Serving the real ASGI app and driving Debian's Chromium: shared by the browser
tests and the benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
