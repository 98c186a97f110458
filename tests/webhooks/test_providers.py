"""Signature checks and push parsing on their own: no request, no database."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from deployments.webhooks import providers

from .conftest import SHA, payload, signed_headers


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_each_provider_accepts_its_own_signature_and_no_other(provider):
    body = payload(provider)
    headers = signed_headers(provider, "s3cret", body, "id-1", ref="refs/heads/main")
    assert providers.verify(provider, "s3cret", body, headers)
    assert not providers.verify(provider, "other", body, headers)
    assert not providers.verify(provider, "", body, headers)
    assert not providers.verify(provider, "s3cret", body, {})


def test_github_signature_needs_the_sha256_prefix():
    body = b"{}"
    mac = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert providers.verify("github", "k", body, {"X-Hub-Signature-256": f"sha256={mac}"})
    assert not providers.verify("github", "k", body, {"X-Hub-Signature-256": mac})


@pytest.mark.parametrize(
    ("provider", "pusher"), [("github", "Codertocat"), ("gitlab", "jsmith"), ("gitea", "gitea")]
)
def test_a_documented_push_payload_parses_into_ref_commit_and_pusher(provider, pusher):
    body = payload(provider, ref="refs/tags/v2.0")
    headers = signed_headers(provider, "k", body, "id", ref="refs/tags/v2.0")
    push = providers.parse(provider, body, headers)
    assert (push.ref, push.commit_sha, push.pusher) == ("refs/tags/v2.0", SHA, pusher)
    assert push.is_push and not push.is_deletion


def test_another_event_parses_into_a_push_with_no_ref():
    push = providers.parse("github", b"not even json", {"X-GitHub-Event": "issues"})
    assert push.event == "issues" and not push.is_push


def test_the_delivery_id_comes_from_the_providers_header():
    assert providers.delivery_id("github", {"X-GitHub-Delivery": "a"}) == "a"
    assert providers.delivery_id("gitlab", {"X-Gitlab-Event-UUID": "b"}) == "b"
    assert providers.delivery_id("gitea", {"X-Forgejo-Delivery": "c"}) == "c"
