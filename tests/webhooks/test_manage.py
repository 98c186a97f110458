"""The placement page: the last deliveries, and admins' secret and rules (audited)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deployments.models import AuditEvent
from deployments.webhooks.models import Outcome, WebhookConfig, WebhookDelivery

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _url(name: str, placement) -> str:
    return reverse(name, args=[placement.repository.name, placement.environment.name])


def test_admin_creates_a_secret_that_is_shown_once_and_stored_encrypted(admin, repository, dev_env, send):
    placement = repository.placements.get(environment=dev_env)
    client = _client(admin)
    response = client.post(_url("webhook_secret", placement))

    assert response.status_code == 200
    secret = response.context["secret"]
    assert len(secret) >= 40 and secret in response.content.decode()
    config = WebhookConfig.objects.get(placement=placement)
    assert secret not in config.secret_encrypted and config.secret == secret
    assert AuditEvent.objects.filter(action="webhook.secret_create", object_id=str(placement.pk)).exists()
    page = client.get(_url("placement_detail", placement)).content.decode()
    assert secret not in page and "Regenerate secret" in page


def test_regenerating_the_secret_stops_the_old_one(admin, hook_placement, send):
    placement, old = hook_placement
    new = _client(admin).post(_url("webhook_secret", placement)).context["secret"]

    assert new != old
    assert send("github", placement, old).status_code == 403
    assert send("github", placement, new).status_code == 201
    assert AuditEvent.objects.filter(action="webhook.secret_regenerate").exists()


def test_admin_edits_the_rules_and_the_change_is_audited(admin, hook_placement):
    placement, _ = hook_placement
    response = _client(admin).post(
        _url("webhook_rules", placement), {"branch_patterns": "main, hotfix/*", "tag_patterns": "v*"}
    )

    assert response.status_code == 302
    config = WebhookConfig.objects.get(placement=placement)
    assert (config.branch_patterns, config.tag_patterns) == ("main hotfix/*", "v*")
    event = AuditEvent.objects.filter(action="webhook.rules").latest("id")
    assert event.details == {"branches": "main hotfix/*", "tags": "v*"}


def test_a_rule_that_is_not_a_ref_pattern_is_refused(admin, hook_placement):
    placement, _ = hook_placement
    _client(admin).post(
        _url("webhook_rules", placement), {"branch_patterns": "main ../x", "tag_patterns": ""}
    )
    assert WebhookConfig.objects.get(placement=placement).branch_patterns == "main release/*"


@pytest.mark.parametrize("who", ["dev", "release"])
def test_only_admins_manage_the_webhook(who, request, hook_placement):
    placement, _ = hook_placement
    client = _client(request.getfixturevalue(who))
    assert client.post(_url("webhook_secret", placement)).status_code == 403
    assert client.post(_url("webhook_rules", placement), {"branch_patterns": "*"}).status_code == 403
    assert WebhookConfig.objects.get(placement=placement).branch_patterns == "main release/*"
    page = client.get(_url("placement_detail", placement)).content.decode()
    assert "webhook-rules" not in page


def test_the_manage_forms_need_a_csrf_token(admin, hook_placement):
    placement, _ = hook_placement
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post(_url("webhook_secret", placement)).status_code == 403


def test_the_placement_page_shows_the_last_20_deliveries_and_why(dev, hook_placement, send):
    placement, secret = hook_placement
    for i in range(22):
        send("github", placement, secret, ref=f"refs/heads/topic-{i}")
    send("github", placement, secret, ref="refs/heads/main", delivery="dup")
    send("github", placement, secret, ref="refs/heads/main", delivery="dup")

    response = _client(dev).get(_url("placement_detail", placement))
    page = response.content.decode()
    assert len(response.context["webhook_deliveries"]) == 20
    assert "No rule matches refs/heads/topic-21." in page
    assert "refs/heads/topic-0<" not in page  # the oldest fell off
    assert "Replayed id." in page and "Matched branch main." in page
    assert WebhookDelivery.objects.filter(outcome=Outcome.DUPLICATE).count() == 1
    assert f"/hooks/github/{placement.pk}" in page


def test_the_placement_page_queries_do_not_grow_with_deliveries(dev, hook_placement, send):
    placement, secret = hook_placement
    send("github", placement, secret, ref="refs/heads/topic")
    client = _client(dev)
    client.get(_url("placement_detail", placement))
    with CaptureQueriesContext(connection) as few:
        client.get(_url("placement_detail", placement))
    for i in range(10):
        send("github", placement, secret, ref=f"refs/heads/topic-{i}")
    with CaptureQueriesContext(connection) as many:
        client.get(_url("placement_detail", placement))
    assert len(many.captured_queries) == len(few.captured_queries)
