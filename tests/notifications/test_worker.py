"""Deliveries through a real Celery worker on the notifications queue and real Redis:
retries with backoff, giving up, and a hanging receiver that never slows a deployment."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from deployments import services
from deployments.models import Deployment, Status
from deployments.notifications import hooks
from deployments.notifications import services as notify_services
from deployments.notifications.models import Channel, Delivery, DeliveryStatus, Subscription

from .conftest import Receiver, verify, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ROLLED_BACK, Status.REJECTED}


def webhook(receiver: Receiver, env: Any, events: list[str], secret: str = "s3cret") -> Channel:
    channel = Channel(name="hook", kind="webhook", url=receiver.url + "/hook", events=events)
    channel.set_secret(secret)
    channel.save()
    Subscription.objects.create(channel=channel, environment=env)
    return channel


def settled(delivery: Delivery, timeout: float = 20) -> Delivery:
    def done() -> Delivery | None:
        delivery.refresh_from_db()
        return delivery if delivery.is_finished else None

    return wait_until(done, timeout, f"delivery {delivery.pk} settled")


def test_a_receiver_that_fails_three_times_gets_one_delivery_after_four_attempts(
    notifications_worker, receiver, admin, dev_env
):
    receiver.answers = [500, 500, 500]
    channel = webhook(receiver, dev_env, ["lock_changed"])
    services.environment_lock(user=admin, environment=dev_env, reason="audit week")

    delivery = settled(Delivery.objects.get(channel=channel))

    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 4
    attempts = list(delivery.attempt_set.order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 500), (4, 200)]
    assert all(a.duration_ms < 2000 for a in attempts)
    # Exponential backoff: 0.05, 0.1, 0.2 s between the attempts.
    gaps = [
        (b.started_at - a.started_at).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)
    ]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    requests = receiver.wait_for(4)
    assert len(requests) == 4
    # The same delivery id on every attempt, so a receiver can drop duplicates.
    assert {r.headers["X-Shipmate-Delivery"] for r in requests} == {str(delivery.uuid)}
    assert all(verify("s3cret", r) for r in requests)
    body = json.loads(requests[-1].body)
    assert body["event"] == "lock_changed" and body["lock"]["reason"] == "audit week"


def test_a_receiver_that_keeps_failing_is_given_up_after_the_bound(
    notifications_worker, receiver, admin, dev_env, notify_settings
):
    notify_settings.NOTIFY_MAX_ATTEMPTS = 3
    receiver.answers = [503] * 10
    channel = webhook(receiver, dev_env, ["lock_changed"])
    services.environment_lock(user=admin, environment=dev_env, reason="x")

    delivery = settled(Delivery.objects.get(channel=channel))

    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3
    assert list(delivery.attempt_set.values_list("status_code", flat=True)) == [503, 503, 503]
    assert delivery.last_error == "HTTP 503; gave up after 3 attempt(s)"
    time.sleep(0.5)  # a fourth attempt would be due by now
    assert len(receiver.requests) == 3


def test_a_4xx_is_not_retried(notifications_worker, receiver, admin, dev_env):
    receiver.answers = [401]
    channel = webhook(receiver, dev_env, ["lock_changed"])
    services.environment_lock(user=admin, environment=dev_env, reason="x")
    delivery = settled(Delivery.objects.get(channel=channel))
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_error == "HTTP 401"


def test_send_test_is_delivered_and_signed(notifications_worker, receiver, admin, dev_env):
    channel = webhook(receiver, dev_env, [])
    test = notify_services.channel_send_test(user=admin, channel=channel)
    assert settled(test).status == DeliveryStatus.DELIVERED
    (request,) = receiver.wait_for(1)
    assert request.headers["X-Shipmate-Event"] == "test" and verify("s3cret", request)


def _deploy(user: Any, repository: Any, env: Any) -> tuple[Deployment, float]:
    start = time.monotonic()
    d = services.deployment_request(user=user, repository=repository, environment=env, ref="main")
    d = wait_until(
        lambda: Deployment.objects.filter(pk=d.pk, status__in=FINAL).first(), 120, "deployment finished"
    )
    return d, time.monotonic() - start


def test_a_hanging_receiver_does_not_slow_the_deployment(
    celery_worker, notifier_process, receiver, dev, repository, dev_env
):
    """The real deployment worker (in this process) and the notifications worker (its
    own process, as make run and compose.yaml run it) share Redis and the database."""
    notifier_process(SHIPMATE_NOTIFY_TIMEOUT="4", SHIPMATE_NOTIFY_MAX_ATTEMPTS="1")
    baseline, plain = _deploy(dev, repository, dev_env)
    assert baseline.status == Status.SUCCEEDED, baseline.error

    hang = 60.0
    receiver.hang = hang
    channel = webhook(receiver, dev_env, ["requested", "succeeded"])
    deployment, slowed = _deploy(dev, repository, dev_env)

    assert deployment.status == Status.SUCCEEDED, deployment.error
    print(f"\ndeployment without a channel {plain:.1f} s, with a hanging receiver {slowed:.1f} s")
    assert slowed < plain + 3.0 and slowed < hang / 4
    requested = settled(Delivery.objects.get(channel=channel, event="requested"), timeout=30)
    (attempt,) = requested.attempt_set.all()
    assert attempt.status_code is None and attempt.error == "Timed out after 4 s"
    assert 3900 <= attempt.duration_ms < 6000
    assert requested.status == DeliveryStatus.FAILED
    assert receiver.requests[0].headers["X-Shipmate-Event"] == "requested"


def test_a_delivery_whose_message_was_lost_is_published_again_and_sent_once(
    notifications_worker, receiver, dev_env
):
    from datetime import timedelta

    from django.utils import timezone

    channel = webhook(receiver, dev_env, ["lock_changed"])
    payload = {"event": "lock_changed", "environment": dev_env.name}
    lost = Delivery.objects.create(channel=channel, event="lock_changed", payload=payload)
    fresh = Delivery.objects.create(channel=channel, event="lock_changed", payload=payload)
    done = Delivery.objects.create(channel=channel, event="lock_changed", payload=payload, status="delivered")
    # No message was ever published for these (the broker was down, say); one is long overdue.
    Delivery.objects.filter(pk__in=[lost.pk, done.pk]).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )

    assert notify_services.deliveries_redispatch() == 1

    assert settled(lost).status == DeliveryStatus.DELIVERED
    assert notify_services.deliveries_redispatch() == 0
    # Had the first message only been late, it would now arrive as a duplicate: not sent again.
    hooks.publish(lost.pk)
    time.sleep(0.5)  # a second send would have happened by now
    assert len(receiver.requests) == 1 and lost.attempt_set.count() == 1
    fresh.refresh_from_db()
    assert fresh.status == DeliveryStatus.PENDING and fresh.attempts == 0
