"""The endpoints: signatures, replays, size, rules, and policy exactly as for a click."""

from __future__ import annotations

import hashlib
import hmac
import subprocess

import pytest
from django.test import Client, override_settings

from deployments import services as deploy_services
from deployments.execution import execute
from deployments.models import AuditEvent, Deployment, Status, Trigger
from deployments.webhooks import services
from deployments.webhooks.models import Outcome, WebhookDelivery
from deployments.webhooks.services import SERVICE_USERNAME

from .conftest import PUSHERS, SHA, payload, signed_headers

pytestmark = pytest.mark.django_db

PROVIDERS = ["github", "gitlab", "gitea"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_signed_push_to_a_matching_branch_deploys_the_pushed_commit(provider, hook_placement, send):
    placement, secret = hook_placement
    response = send(provider, placement, secret, delivery="d-1")

    assert response.status_code == 201, response.content
    deployment = Deployment.objects.get()
    assert deployment.trigger == Trigger.WEBHOOK
    assert deployment.ref == SHA
    assert deployment.environment == placement.environment and deployment.repository == placement.repository
    assert deployment.requested_by.username == SERVICE_USERNAME
    assert deployment.status == Status.QUEUED
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.deployment, delivery.pusher) == (
        Outcome.DEPLOYED,
        deployment,
        PUSHERS[provider],
    )
    assert (delivery.ref, delivery.commit_sha, delivery.delivery_id) == ("refs/heads/main", SHA, "d-1")
    assert response.json()["deployment"] == deployment.pk
    event = AuditEvent.objects.get(action="webhook.push")
    assert event.details["pusher"] == PUSHERS[provider] and event.details["ref"] == "refs/heads/main"
    assert AuditEvent.objects.filter(action="deployment.webhook", object_id=str(deployment.pk)).exists()


@pytest.mark.parametrize("ref", ["refs/heads/release/2.1", "refs/tags/v1.4.0"])
def test_branch_and_tag_patterns_match_with_fnmatch(ref, hook_placement, send):
    placement, secret = hook_placement
    assert send("gitlab", placement, secret, ref=ref).status_code == 201
    assert Deployment.objects.get().ref == SHA


@pytest.mark.parametrize("ref", ["refs/heads/feature/x", "refs/heads/mainline", "refs/tags/release-1"])
def test_a_push_that_matches_no_rule_is_recorded_and_deploys_nothing(ref, hook_placement, send):
    placement, secret = hook_placement
    response = send("github", placement, secret, ref=ref)

    assert response.status_code == 202
    assert not Deployment.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.NO_MATCH and delivery.ref == ref and delivery.pusher == "Codertocat"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_bad_signature_is_refused_and_nothing_is_recorded(provider, hook_placement, send):
    placement, secret = hook_placement
    response = send(provider, placement, "not-the-secret")

    assert response.status_code == 403
    assert response.json()["outcome"] == "refused"
    assert not Deployment.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_body_changed_after_signing_is_refused(hook_placement, send):
    placement, secret = hook_placement
    body = payload("github")
    signed = send("github", placement, secret, body=payload("github", ref="refs/heads/other"))
    assert signed.status_code == 202  # the control: the same secret, an honest body
    headers = signed_headers("github", secret, payload("github", ref="refs/heads/other"), "x", ref="")
    response = send("github", placement, secret, body=body, headers=headers)
    assert response.status_code == 403
    assert not Deployment.objects.exists()


def test_a_placement_without_a_secret_refuses_every_delivery(repository, dev_env, send):
    placement = repository.placements.get(environment=dev_env)
    assert send("github", placement, "").status_code == 403
    assert send("gitlab", placement, "").status_code == 403


def test_forgejo_signature_header_is_accepted(hook_placement, send):
    placement, secret = hook_placement
    body = payload("gitea")
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Forgejo-Signature": mac, "X-Gitea-Signature": "", "X-Forgejo-Event": "push"}
    assert send("gitea", placement, secret, body=body, headers=headers).status_code == 201


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_replayed_delivery_id_is_recorded_as_duplicate_and_deploys_once(provider, hook_placement, send):
    placement, secret = hook_placement
    assert send(provider, placement, secret, delivery="same-id").status_code == 201
    replay = send(provider, placement, secret, delivery="same-id")

    assert replay.status_code == 200
    assert replay.json()["outcome"] == Outcome.DUPLICATE
    assert Deployment.objects.count() == 1
    assert list(WebhookDelivery.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.DEPLOYED,
        Outcome.DUPLICATE,
    ]


@override_settings(WEBHOOK_MAX_BYTES=2048)
def test_an_oversize_body_is_refused_before_anything_else(hook_placement, send):
    placement, secret = hook_placement
    body = payload("github")[:-1] + b', "padding": "' + b"x" * 4096 + b'"}'
    response = send("github", placement, secret, body=body)

    assert response.status_code == 413
    assert not Deployment.objects.exists() and not WebhookDelivery.objects.exists()


def test_the_endpoint_takes_post_only_and_needs_no_csrf_token(hook_placement, send):
    placement, secret = hook_placement
    assert Client().get(f"/hooks/github/{placement.pk}").status_code == 405
    assert Client().post("/hooks/bitbucket/1", b"{}", content_type="application/json").status_code == 404
    assert send("github", placement, secret).status_code == 201  # enforce_csrf_checks=True


@pytest.mark.django_db(transaction=True)
def test_a_push_to_an_approval_environment_builds_and_waits_for_approval(
    admin, repository, make_environment, demo_repo_path, docker_engine, send
):
    live = make_environment("live", order=30, approval=True)
    placement = repository.placements.get(environment=live)
    secret = services.webhook_secret_regenerate(user=admin, placement=placement)
    services.webhook_rules_set(user=admin, placement=placement, branch_patterns="main", tag_patterns="")
    sha = subprocess.run(
        ["git", "-C", str(demo_repo_path), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert send("github", placement, secret, after=sha).status_code == 201
    deployment = Deployment.objects.get()

    assert execute(deployment.pk, worker="test") == Status.AWAITING_APPROVAL
    deployment.refresh_from_db()
    assert deployment.status == Status.AWAITING_APPROVAL
    assert deployment.commit_sha == sha and deployment.trigger == Trigger.WEBHOOK
    assert deployment.stages.get(name="rollout").status == "pending"
    assert not docker_engine.containers.list(all=True, filters={"name": f"shipmate-{repository.name}-live"})


def test_a_locked_environment_refuses_the_push_and_records_why(admin, hook_placement, send):
    placement, secret = hook_placement
    deploy_services.environment_lock(user=admin, environment=placement.environment, reason="db migration")
    response = send("gitea", placement, secret)

    assert response.status_code == 409
    assert "db migration" in response.json()["reason"]
    assert not Deployment.objects.exists()
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == Outcome.REFUSED and "locked by admin: db migration" in delivery.reason


def test_a_locked_placement_refuses_the_push_and_records_why(admin, hook_placement, send):
    placement, secret = hook_placement
    deploy_services.placement_lock(user=admin, placement=placement, reason="hold the app")
    response = send("github", placement, secret)

    assert response.status_code == 409
    assert "hold the app" in WebhookDelivery.objects.get().reason
    assert not Deployment.objects.exists()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_push_that_deletes_the_branch_deploys_nothing(provider, hook_placement, send):
    placement, secret = hook_placement
    response = send(provider, placement, secret, after="0" * 40)
    assert response.status_code == 202
    assert not Deployment.objects.exists()
    assert WebhookDelivery.objects.get().outcome == Outcome.IGNORED


def test_a_ping_event_is_answered_and_recorded_as_ignored(hook_placement, send):
    placement, secret = hook_placement
    response = send(
        "github", placement, secret, body=b'{"zen": "Keep it simple."}', headers={"X-GitHub-Event": "ping"}
    )
    assert response.status_code == 202
    assert WebhookDelivery.objects.get().event == "ping"
    assert not Deployment.objects.exists()


def test_a_push_whose_commit_is_not_a_sha_is_refused_as_a_bad_request(hook_placement, send):
    placement, secret = hook_placement
    response = send("github", placement, secret, after="main")
    assert response.status_code == 400
    assert not Deployment.objects.exists()
