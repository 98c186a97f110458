"""Signed deliveries modelled on each provider's documented push payload (fixtures/)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from deployments.models import Environment, Placement, Repository
from deployments.webhooks import services

FIXTURES = Path(__file__).parent / "fixtures"
SHA = "3a9c1f0e2b7d4c5a6e8f9012a3b4c5d6e7f80911"
PUSHERS = {"github": "Codertocat", "gitlab": "jsmith", "gitea": "gitea"}


def payload(provider: str, *, ref: str = "refs/heads/main", after: str = SHA) -> bytes:
    data = json.loads((FIXTURES / f"{provider}_push.json").read_text())
    data["ref"], data["after"] = ref, after
    if provider == "gitlab":
        data["checkout_sha"] = None if set(after) == {"0"} else after
        if ref.startswith("refs/tags/"):
            data["object_kind"] = data["event_name"] = "tag_push"
    return json.dumps(data).encode()


def signed_headers(provider: str, secret: str, body: bytes, delivery: str, *, ref: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if provider == "github":
        return {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": f"sha256={mac}",
        }
    if provider == "gitlab":
        event = "Tag Push Hook" if ref.startswith("refs/tags/") else "Push Hook"
        return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": secret}
    return {"X-Gitea-Event": "push", "X-Gitea-Delivery": delivery, "X-Gitea-Signature": mac}


@pytest.fixture
def hook_placement(admin: User, repository: Repository, dev_env: Environment) -> tuple[Placement, str]:
    """The demo app in dev, deploying pushes to main and release/* and tags v*."""
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    secret = services.webhook_secret_regenerate(user=admin, placement=placement)
    services.webhook_rules_set(
        user=admin, placement=placement, branch_patterns="main release/*", tag_patterns="v*"
    )
    return placement, secret


@pytest.fixture
def send() -> Callable[..., Any]:
    client = Client(enforce_csrf_checks=True)

    def post(
        provider: str,
        placement: Placement,
        secret: str,
        *,
        ref: str = "refs/heads/main",
        after: str = SHA,
        delivery: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        body = payload(provider, ref=ref, after=after) if body is None else body
        sent = signed_headers(provider, secret, body, delivery or str(uuid.uuid4()), ref=ref)
        sent.update(headers or {})
        return client.post(
            f"/hooks/{provider}/{placement.pk}", body, content_type="application/json", headers=sent
        )

    return post
