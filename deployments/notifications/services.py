"""Database writes of the notifications app: channels (audited, admins only) and the
record of each delivery attempt."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import Deployment, Environment, Placement
from ..services.audit import audit
from ..services.common import require_admin
from ..services.deployments import DeployRefused
from . import delivery, hooks
from .models import Attempt, Channel, Delivery, DeliveryStatus, Event, Subscription

logger = logging.getLogger(__name__)


def _subscribe(
    channel: Channel, environments: Iterable[Environment], placements: Iterable[Placement]
) -> list[str]:
    channel.subscriptions.all().delete()
    Subscription.objects.bulk_create(
        [Subscription(channel=channel, environment=e) for e in environments]
        + [Subscription(channel=channel, placement=p) for p in placements]
    )
    return sorted(
        str(s.environment or s.placement)
        for s in channel.subscriptions.select_related(
            "environment", "placement__repository", "placement__environment"
        )
    )


@transaction.atomic
def channel_create(
    *,
    user: Any,
    channel: Channel,
    secret: str = "",
    environments: Iterable[Environment] = (),
    placements: Iterable[Placement] = (),
    source_ip: str | None = None,
) -> tuple[Channel, str]:
    """Save a validated (full_clean) new channel. Returns it and the secret Shipmate
    generated for a webhook when none was given: shown once, then never again."""
    require_admin(user)
    generated = ""
    if not secret and channel.kind == delivery.WEBHOOK:
        secret = generated = secrets.token_urlsafe(32)
    if not secret and channel.is_commit_status:
        raise DeployRefused("A commit status channel needs the git host's API token.")
    if secret:
        channel.set_secret(secret)
    channel.save()
    scopes = _subscribe(channel, environments, placements)
    audit(
        user, "channel.create", channel, source_ip=source_ip, kind=channel.kind, url=channel.url_shown,
        events=channel.events, subscriptions=scopes,
    )  # fmt: skip
    return channel, generated


@transaction.atomic
def channel_update(
    *,
    user: Any,
    channel: Channel,
    changed: list[str],
    secret: str = "",
    regenerate: bool = False,
    environments: Iterable[Environment] = (),
    placements: Iterable[Placement] = (),
    source_ip: str | None = None,
) -> tuple[Channel, str]:
    """Save a validated channel; a given `secret` replaces the stored one (blank keeps
    it), `regenerate` makes a new webhook secret, returned to be shown once."""
    require_admin(user)
    generated = ""
    if regenerate and channel.kind == delivery.WEBHOOK:
        secret = generated = secrets.token_urlsafe(32)
    if secret:
        channel.set_secret(secret)
        changed = [*changed, "secret"]
    if channel.is_commit_status and not channel.has_secret:
        raise DeployRefused("A commit status channel needs the git host's API token.")
    channel.save()
    scopes = _subscribe(channel, environments, placements)
    audit(
        user, "channel.update", channel, source_ip=source_ip, changed=sorted(set(changed)),
        events=channel.events, subscriptions=scopes,
    )  # fmt: skip
    return channel, generated


@transaction.atomic
def channel_delete(*, user: Any, channel: Channel, source_ip: str | None = None) -> None:
    require_admin(user)
    audit(user, "channel.delete", channel, source_ip=source_ip, kind=channel.kind)
    channel.delete()


def _test_payload(channel: Channel) -> tuple[dict[str, Any], Deployment | None]:
    if channel.is_commit_status:
        # A status needs a real commit: the application's latest deployment that has one,
        # sent with the state it has now.
        scope = Q(environment__notification_subscriptions__channel=channel) | Q(
            environment__placements__notification_subscriptions__channel=channel,
            environment__placements__repository_id=channel.repository_id,
        )
        latest = (
            Deployment.objects.filter(scope, repository_id=channel.repository_id)
            .exclude(commit_sha="")
            .select_related("repository", "environment", "requested_by")
            .order_by("-created_at", "-id")
            .first()
        )
        if latest is None:
            raise DeployRefused(
                f"No deployment of {channel.repository} with a commit in this channel's scope yet: "
                "a commit status needs one."
            )
        return hooks.deployment_payload(latest, "test"), latest
    return {
        "event": "test",
        "occurred_at": timezone.now().isoformat(),
        "summary": f"Test notification from Shipmate to {channel.name}",
        "url": hooks.absolute(f"/manage/notifications/{channel.pk}/"),
        "application": None,
        "environment": None,
        "actor": "",
        "deployment": None,
        "lock": None,
    }, None


@transaction.atomic
def channel_send_test(*, user: Any, channel: Channel, source_ip: str | None = None) -> Delivery:
    """Queue one test delivery; the channel's page shows its attempts."""
    require_admin(user)
    payload, deployment = _test_payload(channel)
    payload["actor"] = user.get_username()
    test = Delivery.objects.create(channel=channel, event="test", deployment=deployment, payload=payload)
    transaction.on_commit(lambda: hooks.publish(test.pk), robust=True)
    audit(user, "channel.send_test", channel, source_ip=source_ip, delivery=str(test.uuid))
    return test


# --- delivering ------------------------------------------------------------------------------------


def delivery_claim(*, delivery_id: int) -> Delivery | None:
    """Take a pending delivery (or one whose sender died mid-attempt) for one attempt;
    None when another worker has it or it is settled (a duplicate message)."""
    now = timezone.now()
    mine = Delivery.objects.filter(
        Q(status=DeliveryStatus.PENDING)
        | Q(status=DeliveryStatus.SENDING, claimed_at__lt=now - Delivery.stale_claim()),
        pk=delivery_id,
    ).update(status=DeliveryStatus.SENDING, claimed_at=now)
    if not mine:
        return None
    return Delivery.objects.select_related("channel", "channel__repository").get(pk=delivery_id)


def backoff(attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): base, 2×base, 4×base, …"""
    return float(settings.NOTIFY_BACKOFF * 2 ** (attempt - 1))


def _settle(d: Delivery, number: int, started: Any, result: delivery.Result) -> float | None:
    retry = None
    if result.ok:
        status = DeliveryStatus.DELIVERED
    elif result.retryable and number < settings.NOTIFY_MAX_ATTEMPTS:
        status, retry = DeliveryStatus.PENDING, backoff(number)
    else:
        status = DeliveryStatus.FAILED
    error = result.error or ("" if result.ok else f"HTTP {result.status_code}")
    if status == DeliveryStatus.FAILED and result.retryable:
        error = f"{error}; gave up after {number} attempt(s)"
    with transaction.atomic():
        Attempt.objects.create(
            delivery=d, number=number, started_at=started, duration_ms=int(result.duration * 1000),
            status_code=result.status_code, error=result.error[:2000],
        )  # fmt: skip
        Delivery.objects.filter(pk=d.pk, status=DeliveryStatus.SENDING).update(
            status=status,
            attempts=number,
            last_error=error[:2000],
            next_attempt_at=timezone.now() + timedelta(seconds=retry) if retry is not None else None,
            finished_at=None if retry is not None else timezone.now(),
        )
    return retry


def delivery_attempt(*, delivery_id: int) -> float | None:
    """One attempt at a delivery, recorded with its status code or error and duration.
    Returns the seconds to wait before the next attempt, or None when it is settled (or
    not ours). Holds no transaction while it talks to the receiver."""
    d = delivery_claim(delivery_id=delivery_id)
    if d is None:
        return None
    number = d.attempts + 1
    started = timezone.now()
    try:
        request = delivery.build(d.channel.target(), d.payload, delivery_id=str(d.uuid))
    except delivery.NotApplicable as exc:
        return _settle(d, number, started, delivery.Result(None, f"Refused: {exc}", 0.0))
    except ValueError as exc:  # the secret cannot be decrypted
        return _settle(d, number, started, delivery.Result(None, f"Refused: {exc}", 0.0))
    result = delivery.send(request, timeout=float(settings.NOTIFY_TIMEOUT))
    if not result.ok:
        logger.warning(
            "notification %s to channel %s: attempt %d failed: %s",
            d.uuid, d.channel.name, number, result.error or f"HTTP {result.status_code}",
        )  # fmt: skip
    return _settle(d, number, started, result)


# A pending delivery whose attempt was due this long ago has lost its message (the broker
# was down when it was published, or lost the retry): publish it again.
LOST_AFTER = timedelta(seconds=60)
REDISPATCH_BATCH = 500


def deliveries_redispatch(*, now: Any = None) -> int:
    """Publish again what no message will bring: pending deliveries overdue by
    LOST_AFTER, and sends whose worker died mid-attempt. A duplicate message is
    harmless (delivery_claim takes a delivery once), so nothing is sent twice."""
    now = now or timezone.now()
    overdue = now - LOST_AFTER
    lost = Q(status=DeliveryStatus.PENDING) & (
        Q(next_attempt_at__lt=overdue) | Q(next_attempt_at__isnull=True, created_at__lt=overdue)
    )
    died = Q(status=DeliveryStatus.SENDING, claimed_at__lt=now - Delivery.stale_claim())
    ids = list(
        Delivery.objects.filter(lost | died).order_by("pk").values_list("pk", flat=True)[:REDISPATCH_BATCH]
    )
    for pk in ids:
        hooks.publish(pk)
    if ids:
        logger.warning("published %d notification(s) again whose message was lost", len(ids))
    return len(ids)


__all__ = [
    "deliveries_redispatch",
    "Event",
    "channel_create",
    "channel_delete",
    "channel_send_test",
    "channel_update",
    "delivery_attempt",
]
