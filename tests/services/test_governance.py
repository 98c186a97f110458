"""Locks, freeze windows with break-glass, and the audit trail they leave."""

from __future__ import annotations

from datetime import time as dtime
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments import services
from deployments.models import AuditEvent, Deployment, FreezeWindow, Status
from deployments.selectors import approvals_needed
from deployments.services.audit import audit as audit_service

pytestmark = pytest.mark.django_db


def test_locked_environment_refuses_deploys_with_the_reason(dev, release, repository, dev_env):
    services.environment_lock(user=release, environment=dev_env, reason="database migration running")
    with pytest.raises(services.DeployRefused, match="database migration running"):
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    services.environment_unlock(user=release, environment=dev_env)
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "environment.lock" in actions and "environment.unlock" in actions


def test_lock_expires_by_itself(dev, release, repository, dev_env):
    services.environment_lock(
        user=release, environment=dev_env, reason="short", expires_at=timezone.now() - timedelta(seconds=1)
    )
    dev_env.refresh_from_db()
    assert not dev_env.is_locked
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")


def test_developer_cannot_lock(dev, dev_env):
    with pytest.raises(services.DeployRefused):
        services.environment_lock(user=dev, environment=dev_env, reason="mine")


def test_freeze_refuses_deploys_and_break_glass_needs_a_reason_and_a_second_person(
    dev, release, repository, dev_env
):
    now = timezone.now()
    FreezeWindow.objects.create(
        environment=dev_env,
        reason="Black Friday",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
    )
    with pytest.raises(services.DeployRefused, match="Black Friday"):
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    d = services.deployment_request(
        user=dev,
        repository=repository,
        environment=dev_env,
        ref="main",
        break_glass_reason="checkout is down",
    )
    assert d.break_glass_reason == "checkout is down"
    assert approvals_needed(d) == 1  # dev needs no approval outside a freeze
    event = AuditEvent.objects.get(action="deployment.break_glass")
    assert event.details["reason"] == "checkout is down" and event.details["freeze"] == "Black Friday"
    Deployment.objects.filter(pk=d.pk).update(
        status=Status.AWAITING_APPROVAL, commit_sha="c" * 40, image_digest="r@sha256:1"
    )
    d.refresh_from_db()
    with pytest.raises(services.DeployRefused):
        services.deployment_approve(user=dev, deployment=d)
    services.deployment_approve(user=release, deployment=d, comment="ok, go")
    d.refresh_from_db()
    assert d.status == Status.APPROVED


def test_weekly_freeze_window_covers_its_hours_across_midnight(dev_env):
    window = FreezeWindow(
        environment=dev_env,
        kind="weekly",
        reason="weekend",
        weekday=4,
        start_time=dtime(22, 0),
        duration_minutes=180,
    )
    friday_late = timezone.make_aware(timezone.datetime(2026, 11, 27, 23, 30))
    saturday_early = timezone.make_aware(timezone.datetime(2026, 11, 28, 0, 30))
    saturday_late = timezone.make_aware(timezone.datetime(2026, 11, 28, 1, 30))
    thursday = timezone.make_aware(timezone.datetime(2026, 11, 26, 23, 0))
    assert window.covers(friday_late) and window.covers(saturday_early)
    assert not window.covers(saturday_late) and not window.covers(thursday)


def test_lock_and_unlock_through_the_environment_page(release, dev, dev_env):
    client = Client()
    client.force_login(release)
    client.post(reverse("environment_lock", args=[dev_env.name]), {"reason": "incident 42"})
    dev_env.refresh_from_db()
    assert dev_env.is_locked and dev_env.locked_by == release
    page = Client()
    page.force_login(dev)
    assert "incident 42" in page.get(reverse("environment_detail", args=[dev_env.name])).content.decode()
    page.post(reverse("environment_unlock", args=[dev_env.name]))
    dev_env.refresh_from_db()
    assert dev_env.is_locked  # a developer's unlock is refused
    client.post(reverse("environment_unlock", args=[dev_env.name]))
    dev_env.refresh_from_db()
    assert not dev_env.is_locked


def test_audit_events_cannot_be_changed_or_deleted(dev, repository, dev_env):
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    event = AuditEvent.objects.first()
    event.action = "tampered"
    with pytest.raises(Exception, match="cannot be changed"):
        event.save()
    with pytest.raises(Exception, match="cannot be deleted"):
        event.delete()


def test_audit_page_filters_and_exports_csv(admin, dev, repository, dev_env):
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    client = Client()
    client.post(reverse("login"), {"username": "=HYPERLINK(1)", "password": "x"})
    client.force_login(admin)
    html = client.get(reverse("audit"), {"action": "deployment.click"}).content.decode()
    assert "deployment.click" in html
    response = client.get(reverse("audit"), {"format": "csv"})
    body = b"".join(response.streaming_content).decode()
    assert response["Content-Type"] == "text/csv"
    assert body.splitlines()[0].startswith("created_at,actor_name,action")
    assert "deployment.click" in body
    assert ",=HYPERLINK" not in body and ",'=HYPERLINK(1)" in body  # no spreadsheet formula injection
    developer = Client()
    developer.force_login(dev)
    assert developer.get(reverse("audit")).status_code == 403


def test_audit_csv_details_are_json_and_the_page_shows_digests_by_their_hash(admin, dev, repository, dev_env):
    import csv
    import io
    import json

    digest = "127.0.0.1:5001/shipmate-test/demo@sha256:" + "ab" * 32
    audit_service(
        "system",
        "deployment.succeeded",
        None,
        object_type="deployment",
        image_digest=digest,
        commit_sha="",
        reason='it\'s "quoted"',
        stage="verify",
    )
    client = Client()
    client.force_login(admin)
    response = client.get(reverse("audit"), {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = next(r for r in rows if r["action"] == "deployment.succeeded")
    assert json.loads(row["details"]) == {"reason": 'it\'s "quoted"', "stage": "verify"}
    html = client.get(reverse("audit")).content.decode()
    # The hash part that tells images apart, with the whole digest on hover.
    assert f'<code class="digest" title="{digest}">sha256:{"ab" * 6}</code>' in html
    # No empty commit pill where the event has no commit.
    assert "<code></code>" not in html and '<code title=""' not in html
