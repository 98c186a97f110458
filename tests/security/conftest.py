"""Real loopback servers and guards for the SSRF tests.

Network rule: these tests send traffic to 127.0.0.1, 127.0.0.2 (also loopback on
Linux) and ::1 only. Refusals of other addresses are proven by the policy refusing
before any connection: `no_connections` fails a test that tries one."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from deployments.pipeline.outbound import OutboundPolicy


@pytest.fixture
def deny_all(settings: Any) -> OutboundPolicy:
    """The default policy, also for everything that reads the Django setting."""
    settings.OUTBOUND_ALLOW_INTERNAL = []
    return OutboundPolicy()


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connect in this process is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, list[str]], list[str]]:
    """Make names of our choosing resolve (in this process only) to given addresses;
    returns the list of names looked up, in order."""
    real = socket.getaddrinfo
    names: dict[str, list[str]] = {}
    looked_up: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in names:
            looked_up.append(host)
            answer = names[host]
            address = answer.pop(0) if len(answer) > 1 else answer[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (
                (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            )
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def add(name: str, addresses: list[str]) -> list[str]:
        names[name] = list(addresses)
        return looked_up

    return add


@dataclass
class Server:
    host: str
    port: int
    requests: list[dict[str, str]] = field(default_factory=list)
    location: str = ""  # where a redirector sends every request

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


Handler = Callable[[http.server.BaseHTTPRequestHandler, Server], None]


def serve(host: str, respond: Handler) -> Iterator[Server]:
    class Server6(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server(host, 0)

    class RequestHandler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            server.requests.append({"method": self.command, "path": self.path, "host": self.headers["Host"]})
            respond(self, server)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = Server6((host, 0), RequestHandler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


def answer(status: int, location: str = "") -> Handler:
    def respond(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(status)
        if location:
            handler.send_header("Location", location)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    return respond


@pytest.fixture
def ok_server() -> Iterator[Server]:
    yield from serve("127.0.0.1", answer(200))


@pytest.fixture
def other_loopback_server() -> Iterator[Server]:
    """On 127.0.0.2: loopback, but outside a policy that allows 127.0.0.1/32 only."""
    yield from serve("127.0.0.2", answer(200))


@pytest.fixture
def redirector() -> Iterator[Server]:
    """Answers every request with 302 to `server.location` (set by the test)."""

    def respond(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        answer(302, server.location)(handler, server)

    yield from serve("127.0.0.1", respond)
