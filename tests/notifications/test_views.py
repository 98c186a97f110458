"""Manage → Notifications: admins only, POST + CSRF, audited, secrets never rendered
back; the outbound guard refuses internal URLs on save in Manage and the admin alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from deployments.models import AuditEvent, Placement
from deployments.notifications.models import Channel, Delivery, Subscription

pytestmark = pytest.mark.django_db

TOKEN = "ghp_typed-by-the-admin-5d1c"


def client_for(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def hook(dev_env: Any) -> Channel:
    channel = Channel(name="team-hook", kind="webhook", url="https://hooks.example.com/x", events=["failed"])
    channel.set_secret("stored-secret-value-77")
    channel.save()
    Subscription.objects.create(channel=channel, environment=dev_env)
    return channel


def form(**fields: Any) -> dict[str, Any]:
    data = {"name": "chat", "kind": "slack", "url": "https://chat.example.com/hooks/abc", "events": ["failed"],
            "enabled": "on", "project": "", "repository": "", "secret": ""}  # fmt: skip
    data.update(fields)
    return data


@pytest.mark.parametrize("who", ["dev", "release", "outsider"])
def test_only_admins_see_or_change_channels(request, who, hook):
    client = client_for(request.getfixturevalue(who))
    for name in ("notification_channels", "notification_channel_new"):
        assert client.get(reverse(name)).status_code == 403
    for name in ("notification_channel", "notification_channel_edit"):
        assert client.get(reverse(name, args=[hook.pk])).status_code == 403
    for name in ("notification_channel_test", "notification_channel_delete"):
        assert client.post(reverse(name, args=[hook.pk])).status_code == 403
    assert client.post(reverse("notification_channel_new"), form()).status_code == 403
    assert Channel.objects.count() == 1 and not Delivery.objects.exists()


def test_anonymous_is_sent_to_log_in(hook):
    response = Client().get(reverse("notification_channels"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_list_shows_channels_to_an_admin(admin, hook, repository):
    page = client_for(admin).get(reverse("notification_channels")).content.decode()
    assert "team-hook" in page and "Failed" in page and "dev" in page
    assert "stored-secret-value-77" not in page
    assert reverse("notification_channels") in client_for(admin).get(reverse("manage_home")).content.decode()
    new = client_for(admin).get(reverse("notification_channel_new")).content.decode()
    for field in ("name", "kind", "url", "events", "environments", "placements", "secret"):
        assert f'name="{field}"' in new
    edit = client_for(admin).get(reverse("notification_channel_edit", args=[hook.pk])).content.decode()
    assert 'name="regenerate"' in edit and "stored-secret-value-77" not in edit


def test_creating_a_webhook_shows_its_secret_once_and_audits(admin, dev_env):
    client = client_for(admin)
    response = client.post(
        reverse("notification_channel_new"),
        form(name="ops", kind="webhook", url="https://ops.example.com/hook", environments=[dev_env.pk]),
    )
    assert response.status_code == 200
    channel = Channel.objects.get(name="ops")
    secret = channel.secret
    assert len(secret) >= 40 and secret in response.content.decode()
    assert secret not in channel.secret_encrypted  # encrypted at rest
    for url in (
        reverse("notification_channel", args=[channel.pk]),
        reverse("notification_channel_edit", args=[channel.pk]),
    ):
        assert secret not in client.get(url).content.decode()
    event = AuditEvent.objects.get(action="channel.create")
    assert event.actor == admin and event.object_id == str(channel.pk)
    assert secret not in str(event.details)
    assert list(channel.subscriptions.values_list("environment__name", flat=True)) == ["dev"]


def test_a_token_is_write_only_and_blank_keeps_it(admin, repository, dev_env):
    client = client_for(admin)
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    data = form(name="gh", kind="github", url="https://api.github.com", repository=repository.pk,
                project="acme/demo", secret=TOKEN, placements=[placement.pk], events=["succeeded"])  # fmt: skip
    assert client.post(reverse("notification_channel_new"), data).status_code == 302
    channel = Channel.objects.get(name="gh")
    assert channel.secret == TOKEN
    edit = reverse("notification_channel_edit", args=[channel.pk])
    assert TOKEN not in client.get(edit).content.decode()
    data.update(secret="", events=["succeeded", "failed"])
    assert client.post(edit, data).status_code == 302
    channel.refresh_from_db()
    assert channel.secret == TOKEN and channel.events == ["succeeded", "failed"]
    refused = client.post(edit, {**data, "url": "http://10.0.0.5/", "secret": "other-token-1"})
    assert refused.status_code == 400 and "Refused to connect to 10.0.0.5" in refused.content.decode()
    assert TOKEN not in refused.content.decode() and "other-token-1" not in refused.content.decode()
    channel.refresh_from_db()
    assert channel.secret == TOKEN
    changed = AuditEvent.objects.get(action="channel.update")
    assert changed.details["changed"] == ["events"] and TOKEN not in str(changed.details)


def test_a_commit_status_channel_needs_an_application_and_a_token(admin, repository, dev_env):
    client = client_for(admin)
    data = form(name="gl", kind="gitlab", url="https://gitlab.example.com/api/v4", environments=[dev_env.pk])
    response = client.post(reverse("notification_channel_new"), data)
    assert response.status_code == 400 and "belongs to one application" in response.content.decode()
    response = client.post(reverse("notification_channel_new"), {**data, "repository": repository.pk})
    assert response.status_code == 400
    assert not Channel.objects.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://[::1]/x", "http://169.254.169.254/latest",
                                 "http://2130706433/x", "http://localhost/x"])  # fmt: skip
def test_an_internal_url_is_refused_on_save_when_not_allowed(admin, dev_env, settings, url):
    settings.OUTBOUND_ALLOW_INTERNAL = []
    response = client_for(admin).post(
        reverse("notification_channel_new"), form(url=url, environments=[dev_env.pk])
    )
    assert response.status_code == 400
    assert "Refused to connect to" in response.content.decode()
    assert not Channel.objects.exists()


def test_an_internal_url_is_accepted_when_an_admin_allows_loopback(admin, dev_env, settings):
    settings.OUTBOUND_ALLOW_INTERNAL = ["loopback"]
    response = client_for(admin).post(
        reverse("notification_channel_new"), form(url="http://127.0.0.1:8080/hook", environments=[dev_env.pk])
    )
    assert response.status_code == 302 and Channel.objects.filter(name="chat").exists()


def test_the_django_admin_applies_the_same_check(dev_env, settings):
    settings.OUTBOUND_ALLOW_INTERNAL = []
    root = client_for(User.objects.create_superuser("root", "r@example.test", "pw"))
    data = {
        "name": "adm", "kind": "slack", "url": "http://10.0.0.5/hook", "repository": "", "project": "",
        "events": '["failed"]', "enabled": "on", "secret": "",
        "subscriptions-TOTAL_FORMS": "1", "subscriptions-INITIAL_FORMS": "0",
        "subscriptions-MIN_NUM_FORMS": "0", "subscriptions-MAX_NUM_FORMS": "1000",
        "subscriptions-0-environment": str(dev_env.pk), "subscriptions-0-placement": "",
    }  # fmt: skip
    response = root.post(reverse("admin:notifications_channel_add"), data)
    assert response.status_code == 200 and "Refused to connect to 10.0.0.5" in response.content.decode()
    assert not Channel.objects.exists()
    data["url"] = "https://chat.example.com/hook"
    data["events"] = '["no-such-event"]'
    assert (
        "Unknown events: no-such-event"
        in root.post(reverse("admin:notifications_channel_add"), data).content.decode()
    )
    data["events"] = '["failed"]'
    assert root.post(reverse("admin:notifications_channel_add"), data).status_code == 302
    assert Channel.objects.get(name="adm").subscriptions.get().environment == dev_env


def test_send_test_is_a_post_with_csrf_and_audited(
    admin, hook, django_capture_on_commit_callbacks, monkeypatch
):
    from deployments.notifications import hooks

    published: list[int] = []
    monkeypatch.setattr(hooks, "publish", lambda pk, countdown=0: published.append(pk))
    url = reverse("notification_channel_test", args=[hook.pk])
    assert client_for(admin).get(url).status_code == 405
    strict = client_for(admin, enforce_csrf_checks=True)
    assert strict.post(url).status_code == 403
    assert not Delivery.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(admin).post(url)
    assert response.status_code == 302
    test = Delivery.objects.get()
    assert (test.event, test.payload["actor"]) == ("test", "admin")
    assert published == [test.pk]
    event = AuditEvent.objects.get(action="channel.send_test")
    assert event.actor == admin and event.details["delivery"] == str(test.uuid)


def test_the_channel_page_and_its_htmx_fragment_list_deliveries_with_attempts(admin, hook):
    from django.utils import timezone

    d = Delivery.objects.create(channel=hook, event="failed", payload={}, status="delivered", attempts=2)
    d.attempt_set.create(number=1, started_at=timezone.now(), duration_ms=12, status_code=503)
    d.attempt_set.create(number=2, started_at=timezone.now(), duration_ms=0, error="Timed out after 10 s")
    client = client_for(admin)
    url = reverse("notification_channel", args=[hook.pk])
    page = client.get(url).content.decode()
    assert "<html" in page and 'id="send-test"' in page and 'id="deliveries"' in page
    assert "503" in page and "12 ms" in page and "Timed out after 10 s" in page
    assert "stored-secret-value-77" not in page
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and fragment.strip().startswith('<section class="card" id="deliveries"')
    assert "Timed out after 10 s" in fragment and "send-test" not in fragment


def test_a_slack_url_is_shown_without_its_path(admin, dev_env):
    channel = Channel.objects.create(
        name="s", kind="slack", url="https://hooks.slack.com/services/T0/B0/SECRETPATH", events=["failed"]
    )
    Subscription.objects.create(channel=channel, environment=dev_env)
    page = client_for(admin).get(reverse("notification_channel", args=[channel.pk])).content.decode()
    assert "https://hooks.slack.com/…" in page and "SECRETPATH" not in page


def test_delete_is_audited(admin, hook):
    response = client_for(admin).post(reverse("notification_channel_delete", args=[hook.pk]))
    assert response.status_code == 302 and not Channel.objects.exists()
    assert AuditEvent.objects.filter(action="channel.delete", object_repr="team-hook").exists()


def test_send_test_of_a_commit_status_uses_the_latest_deployment_with_a_commit(
    admin, dev, repository, dev_env
):
    from deployments.models import Deployment
    from deployments.notifications import delivery, services

    channel = Channel(name="gh", kind="github", url="https://api.github.com", repository=repository,
                      project="acme/demo", events=["succeeded"])  # fmt: skip
    channel.set_secret(TOKEN)
    channel.save()
    Subscription.objects.create(channel=channel, environment=dev_env)
    client = client_for(admin)
    response = client.post(reverse("notification_channel_test", args=[channel.pk]), follow=True)
    assert "No deployment of demo with a commit" in response.content.decode()
    assert not Delivery.objects.exists()

    ran = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev,
                                    status="succeeded", commit_sha="a" * 40)  # fmt: skip
    test = services.channel_send_test(user=admin, channel=channel)
    assert test.deployment == ran
    request = delivery.build(channel.target(), test.payload, delivery_id=str(test.uuid))
    assert request.url == f"https://api.github.com/repos/acme/demo/statuses/{'a' * 40}"
    assert b'"state":"success"' in request.body and b'"context":"shipmate/dev"' in request.body
