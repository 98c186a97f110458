"""delivery.py against the local receiver: payload shapes, the signature, commit status
requests, redirects, the deadline and the outbound guard at connect time."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from deployments.notifications import delivery
from deployments.pipeline.outbound import OutboundPolicy

from .conftest import Received, Receiver, verify

LOOPBACK = OutboundPolicy.parse("loopback")
DENY = OutboundPolicy()
SHA = "3a9c1f0e2b7d4c5a6e8f9012a3b4c5d6e7f80911"


def event(name: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "occurred_at": "2026-12-06T12:00:00+00:00",
        "summary": f"demo main ({SHA[:10]}) → live: {name} (#42)",
        "url": "https://shipmate.example.com/deployments/42/",
        "application": "demo",
        "environment": "live",
        "actor": "alice",
        "deployment": {
            "id": 42,
            "status": name,
            "ref": "main",
            "commit_sha": SHA,
            "image_digest": "r/d@sha256:ab",
        },
        "lock": None,
        **extra,
    }


def test_webhook_body_is_the_event_and_the_receiver_verifies_its_signature(receiver: Receiver) -> None:
    target = delivery.Target(kind="webhook", url=receiver.url + "/hook", secret="s3cret")
    request = delivery.build(target, event(), delivery_id="d-1")
    result = delivery.send(request, timeout=5, policy=LOOPBACK)

    assert result.ok and result.status_code == 200
    got = receiver.wait_for(1)[0]
    assert got.path == "/hook"
    assert verify("s3cret", got)
    assert not verify("another-secret", got)
    assert got.headers["X-Shipmate-Event"] == "succeeded"
    assert got.headers["X-Shipmate-Delivery"] == "d-1"
    assert got.headers["Content-Type"] == "application/json"
    body = json.loads(got.body)
    assert body == {**event(), "delivery": "d-1"}


def test_the_signature_covers_the_timestamp_so_an_old_delivery_is_refused() -> None:
    body = b'{"event":"succeeded"}'
    old = int(time.time()) - 3600
    signature = delivery.sign("s3cret", old, body)
    assert signature != delivery.sign("s3cret", old + 1, body)
    replayed = Received("/", {"X-Shipmate-Timestamp": str(old), "X-Shipmate-Signature-256": signature}, body)
    assert not verify("s3cret", replayed)
    assert verify("s3cret", replayed, max_age=10**6)


def test_slack_payload_has_text_and_one_simple_attachment(receiver: Receiver) -> None:
    target = delivery.Target(kind="slack", url=receiver.url + "/services/T0/B0/XXX")
    delivery.send(delivery.build(target, event("failed"), delivery_id="d"), timeout=5, policy=LOOPBACK)
    got = receiver.wait_for(1)[0]
    body = json.loads(got.body)
    assert got.path == "/services/T0/B0/XXX"
    assert set(body) == {"text", "attachments"}
    assert body["text"].startswith("demo main (3a9c1f0e2b) → live: failed (#42)")
    assert "<https://shipmate.example.com/deployments/42/|Open in Shipmate>" in body["text"]
    (attachment,) = body["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["title_link"] == "https://shipmate.example.com/deployments/42/"
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "Application": "demo",
        "Environment": "live",
        "Ref": "main (3a9c1f0e2b)",
        "By": "alice",
    }
    assert "X-Shipmate-Signature-256" not in got.headers


@pytest.mark.parametrize(
    ("name", "state"),
    [("requested", "pending"), ("succeeded", "success"), ("failed", "failure"), ("rolled_back", "failure")],
)
def test_github_commit_status_request(receiver: Receiver, name: str, state: str) -> None:
    target = delivery.Target(
        kind="github", url=receiver.url + "/api/v3/", secret="ghp_token", project="acme/shop"
    )
    result = delivery.send(delivery.build(target, event(name), delivery_id="d"), timeout=5, policy=LOOPBACK)
    assert result.ok
    got = receiver.wait_for(1)[0]
    assert got.path == f"/api/v3/repos/acme/shop/statuses/{SHA}"
    assert got.headers["Authorization"] == "Bearer ghp_token"
    assert got.headers["Accept"] == "application/vnd.github+json"
    assert json.loads(got.body) == {
        "state": state,
        "context": "shipmate/live",
        "target_url": "https://shipmate.example.com/deployments/42/",
        "description": f"demo main ({SHA[:10]}) → live: {name} (#42)",
    }


@pytest.mark.parametrize(
    ("name", "state"),
    [("requested", "pending"), ("approved", "running"), ("succeeded", "success"), ("failed", "failed"),
     ("cancelled", "canceled")],
)  # fmt: skip
def test_gitlab_commit_status_request(receiver: Receiver, name: str, state: str) -> None:
    target = delivery.Target(
        kind="gitlab", url=receiver.url + "/api/v4", secret="glpat-token", project="group/sub/shop"
    )
    result = delivery.send(delivery.build(target, event(name), delivery_id="d"), timeout=5, policy=LOOPBACK)
    assert result.ok
    got = receiver.wait_for(1)[0]
    assert got.path == f"/api/v4/projects/group%2Fsub%2Fshop/statuses/{SHA}"
    assert got.headers["PRIVATE-TOKEN"] == "glpat-token"
    assert "Authorization" not in got.headers
    body = json.loads(got.body)
    assert body["state"] == state and body["name"] == "shipmate/live"
    assert body["target_url"] == "https://shipmate.example.com/deployments/42/"


def test_a_commit_status_needs_a_commit() -> None:
    target = delivery.Target(kind="github", url="https://api.github.com", secret="t", project="a/b")
    lock = event("lock_changed", deployment=None)
    with pytest.raises(delivery.NotApplicable):
        delivery.build(target, lock, delivery_id="d")


@pytest.mark.parametrize(
    ("url", "project"),
    [
        ("https://github.com/acme/shop.git", "acme/shop"),
        ("git@github.com:acme/shop.git", "acme/shop"),
        ("ssh://git@gitlab.example.com:2222/group/sub/shop.git", "group/sub/shop"),
        ("https://gitlab.example.com/group/shop", "group/shop"),
        ("/srv/git/shop", "srv/git/shop"),
        ("https://example.com/shop.git", ""),
    ],
)
def test_project_from_the_git_url(url: str, project: str) -> None:
    assert delivery.project_from_git_url(url) == project


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.answers = [302]
    target = delivery.Target(kind="slack", url=receiver.url + "/x")
    result = delivery.send(delivery.build(target, event(), delivery_id="d"), timeout=5, policy=LOOPBACK)
    assert result.status_code == 302 and not result.ok and not result.retryable
    assert "not followed" in result.error
    assert len(receiver.requests) == 1


def test_5xx_and_429_are_retried_4xx_are_not(receiver: Receiver) -> None:
    receiver.answers = [503, 429, 401]
    target = delivery.Target(kind="slack", url=receiver.url + "/x")
    request = delivery.build(target, event(), delivery_id="d")
    results = [delivery.send(request, timeout=5, policy=LOOPBACK) for _ in range(3)]
    assert [(r.status_code, r.retryable) for r in results] == [(503, True), (429, True), (401, False)]


def test_the_timeout_is_a_deadline_for_the_whole_attempt() -> None:
    """A receiver that trickles a byte every 0.2 s never trips a socket timeout; the
    attempt still ends at its deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        target = delivery.Target(kind="slack", url=f"http://127.0.0.1:{server.getsockname()[1]}/x")
        result = delivery.send(delivery.build(target, event(), delivery_id="d"), timeout=1.0, policy=LOOPBACK)
    finally:
        stop.set()
        server.close()
    assert result.status_code is None
    assert result.error == "Timed out after 1 s"
    assert 0.9 <= result.duration < 2.0
    assert result.retryable


def test_an_internal_address_is_refused_at_connect_time(receiver: Receiver, monkeypatch: Any) -> None:
    """A DNS name that resolves to 127.0.0.1 when the notification is sent is refused
    with the allowlist off, before any connection."""
    port = int(receiver.url.rsplit(":", 1)[1])

    real = socket.getaddrinfo

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)  # the pinned connect to the checked address
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    target = delivery.Target(kind="webhook", url=f"http://hooks.example.com:{port}/x", secret="s")
    result = delivery.send(delivery.build(target, event(), delivery_id="d"), timeout=5, policy=DENY)
    assert result.status_code is None and not result.retryable
    assert result.error.startswith(
        "Refused: Refused to connect to hooks.example.com: it resolves to 127.0.0.1"
    )
    assert receiver.requests == []
    # The same name is reached when loopback is allowed: the refusal was the policy's.
    assert delivery.send(delivery.build(target, event(), delivery_id="d"), timeout=5, policy=LOOPBACK).ok
    assert receiver.wait_for(1)[0].headers["Host"] == f"hooks.example.com:{port}"
