"""The receivers of what the services announce (deployments.services.events), inside
their transactions: record a delivery per subscribed channel and publish them once the
transaction commits. They never raise: a notification must not block or fail a
deployment."""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from ..models import Deployment, Environment, Placement
from ..services import events
from .models import Channel, Delivery, Event, Subscription

logger = logging.getLogger(__name__)

DELIVER = "deployments.notifications.tasks.deliver"

# The status a transition moves to → the event it is.
STATUS_EVENTS = {
    "awaiting_approval": Event.AWAITING_APPROVAL,
    "approved": Event.APPROVED,
    "succeeded": Event.SUCCEEDED,
    "failed": Event.FAILED,
    "rolled_back": Event.ROLLED_BACK,
    "cancelled": Event.CANCELLED,
    "rejected": Event.REJECTED,
}


def _name(actor: Any) -> str:
    if getattr(actor, "is_authenticated", False):
        return str(actor.get_username())
    return actor if isinstance(actor, str) else "system"


def absolute(path: str) -> str:
    return settings.SHIPMATE_URL.rstrip("/") + path


def deployment_payload(deployment: Deployment, event: str, actor: Any = None) -> dict[str, Any]:
    status_label = event.replace("_", " ")
    commit = f" ({deployment.commit_sha[:10]})" if deployment.commit_sha else ""
    return {
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "summary": (
            f"{deployment.repository.name} {deployment.ref}{commit} → {deployment.environment.name}: "
            f"{status_label} (#{deployment.pk})"
        ),
        "url": absolute(reverse("deployment_detail", args=[deployment.pk])),
        "application": deployment.repository.name,
        "environment": deployment.environment.name,
        "actor": _name(actor),
        "deployment": {
            "id": deployment.pk,
            "status": deployment.status,
            "ref": deployment.ref,
            "commit_sha": deployment.commit_sha,
            "image_digest": deployment.image_digest,
            "trigger": deployment.trigger,
            "requested_by": deployment.requested_by.get_username() if deployment.requested_by else "",
            "error": deployment.error[:500],
            "created_at": deployment.created_at.isoformat(),
            "finished_at": deployment.finished_at.isoformat() if deployment.finished_at else None,
        },
        "lock": None,
    }


def _lock_payload(environment: Environment, placement: Placement | None, actor: Any) -> dict[str, Any]:
    holder: Environment | Placement = placement or environment
    locked = bool(holder.locked_reason)
    where = f"{placement.repository.name} in {environment.name}" if placement else environment.name
    url = (
        reverse("placement_detail", args=[placement.repository.name, environment.name])
        if placement
        else reverse("environment_detail", args=[environment.name])
    )
    by = holder.locked_by.get_username() if locked and holder.locked_by else ""
    return {
        "event": Event.LOCK_CHANGED.value,
        "occurred_at": timezone.now().isoformat(),
        "summary": f"{where} {'locked: ' + holder.locked_reason if locked else 'unlocked'} by {_name(actor)}",
        "url": absolute(url),
        "application": placement.repository.name if placement else None,
        "environment": environment.name,
        "actor": _name(actor),
        "deployment": None,
        "lock": {
            "scope": "placement" if placement else "environment",
            "locked": locked,
            "reason": holder.locked_reason,
            "by": by,
        },
    }


def publish(delivery_id: int, countdown: float = 0) -> None:
    current_app.signature(DELIVER, args=(delivery_id,)).apply_async(countdown=countdown or None)


def record(
    channels: list[Channel], event: str, payload: dict[str, Any], deployment: Deployment | None
) -> None:
    """A pending delivery per channel, published after the commit."""
    for channel in channels:
        delivery = Delivery.objects.create(
            channel=channel, event=event, deployment=deployment, payload=payload
        )
        transaction.on_commit(lambda pk=delivery.pk: publish(pk), robust=True)


def _channels(scope: Q, event: str, *, repository_id: int | None, has_commit: bool) -> list[Channel]:
    found: dict[int, Channel] = {}
    for sub in Subscription.objects.filter(scope, channel__enabled=True).select_related("channel"):
        channel = sub.channel
        if event not in channel.events:
            continue
        if channel.is_commit_status and (not has_commit or channel.repository_id != repository_id):
            continue  # its token is for one application, and a status needs a commit
        found[channel.pk] = channel
    return sorted(found.values(), key=lambda c: c.pk)


def _safely(what: str, fn: Any, *args: Any) -> None:
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's transaction intact
            fn(*args)
    except Exception:
        logger.exception("notifications: could not record %s; the deployment goes on", what)


def _deployment_event(deployment: Deployment, event: str, actor: Any) -> None:
    scope = Q(environment_id=deployment.environment_id) | Q(
        placement__environment_id=deployment.environment_id,
        placement__repository_id=deployment.repository_id,
    )
    channels = _channels(
        scope, event, repository_id=deployment.repository_id, has_commit=bool(deployment.commit_sha)
    )
    if channels:
        record(channels, event, deployment_payload(deployment, event, actor), deployment)


def deployment_event(deployment: Deployment, event: str, *, actor: Any = None) -> None:
    """Call inside the transaction that moved `deployment`."""
    _safely(f"{event} of deployment {deployment.pk}", _deployment_event, deployment, event, actor)


def status_changed(deployment: Deployment, status: str, *, actor: Any = None) -> None:
    event = STATUS_EVENTS.get(status)
    if event is not None:
        deployment_event(deployment, event, actor=actor)


def _lock_event(environment: Environment, placement: Placement | None, actor: Any) -> None:
    if placement is None:
        scope = Q(environment_id=environment.pk) | Q(placement__environment_id=environment.pk)
    else:
        scope = Q(environment_id=environment.pk) | Q(placement_id=placement.pk)
    channels = _channels(scope, Event.LOCK_CHANGED, repository_id=None, has_commit=False)
    if channels:
        record(channels, Event.LOCK_CHANGED, _lock_payload(environment, placement, actor), None)


def lock_changed(*, environment: Environment, placement: Placement | None = None, actor: Any = None) -> None:
    """Call inside the transaction that locked or unlocked the environment or placement."""
    _safely(f"lock change of {placement or environment}", _lock_event, environment, placement, actor)


@receiver(events.deployment_event, dispatch_uid="notifications.deployment_event")
def _on_deployment_event(
    sender: Any, *, deployment: Deployment, event: str, actor: Any = None, **_: Any
) -> None:
    if event == Event.REQUESTED:
        deployment_event(deployment, Event.REQUESTED, actor=actor)
    else:
        status_changed(deployment, event, actor=actor)


@receiver(events.lock_changed, dispatch_uid="notifications.lock_changed")
def _on_lock_changed(
    sender: Any, *, environment: Environment, placement: Placement | None = None, actor: Any = None, **_: Any
) -> None:
    lock_changed(environment=environment, placement=placement, actor=actor)
