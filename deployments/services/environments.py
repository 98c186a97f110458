from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import permissions
from ..feed import placement_changed
from ..models import Environment, Placement
from . import events
from .audit import audit
from .deployments import DeployRefused
from .queue import dispatch_waiting


@transaction.atomic
def environment_lock(
    *,
    user: Any,
    environment: Environment,
    reason: str,
    expires_at: datetime | None = None,
    source_ip: str | None = None,
) -> Environment:
    if not permissions.can_lock(user, environment):
        raise DeployRefused(f"You may not lock {environment}.")
    if not reason.strip():
        raise DeployRefused("A lock needs a reason.")
    environment.locked_by = user
    environment.locked_reason = reason.strip()
    environment.locked_at = timezone.now()
    environment.lock_expires_at = expires_at
    environment.save(update_fields=["locked_by", "locked_reason", "locked_at", "lock_expires_at"])
    audit(
        user,
        "environment.lock",
        environment,
        source_ip=source_ip,
        reason=environment.locked_reason,
        expires_at=expires_at.isoformat() if expires_at else "",
    )
    events.lock_changed.send(Environment, environment=environment, actor=user)
    placement_changed(environment.pk)
    return environment


@transaction.atomic
def environment_unlock(*, user: Any, environment: Environment, source_ip: str | None = None) -> Environment:
    if not permissions.can_lock(user, environment):
        raise DeployRefused(f"You may not unlock {environment}.")
    environment.locked_by = None
    environment.locked_reason = ""
    environment.locked_at = None
    environment.lock_expires_at = None
    environment.save(update_fields=["locked_by", "locked_reason", "locked_at", "lock_expires_at"])
    audit(user, "environment.unlock", environment, source_ip=source_ip)
    events.lock_changed.send(Environment, environment=environment, actor=user)
    placement_changed(environment.pk)
    dispatch_waiting(environment.pk)  # the held queues move on now, not at the next reap
    return environment


@transaction.atomic
def placement_lock(
    *, user: Any, placement: Placement, reason: str, source_ip: str | None = None
) -> Placement:
    """Hold one application in one environment; the others there keep deploying."""
    if not permissions.can_lock(user, placement.environment):
        raise DeployRefused(f"You may not lock {placement}.")
    if not reason.strip():
        raise DeployRefused("A lock needs a reason.")
    placement.locked_by, placement.locked_reason, placement.locked_at = user, reason.strip(), timezone.now()
    placement.save(update_fields=["locked_by", "locked_reason", "locked_at"])
    audit(user, "placement.lock", placement, source_ip=source_ip, reason=placement.locked_reason)
    events.lock_changed.send(Environment, environment=placement.environment, placement=placement, actor=user)
    placement_changed(placement.environment_id, placement.repository_id)
    return placement


@transaction.atomic
def placement_unlock(*, user: Any, placement: Placement, source_ip: str | None = None) -> Placement:
    if not permissions.can_lock(user, placement.environment):
        raise DeployRefused(f"You may not unlock {placement}.")
    placement.locked_by, placement.locked_reason, placement.locked_at = None, "", None
    placement.save(update_fields=["locked_by", "locked_reason", "locked_at"])
    audit(user, "placement.unlock", placement, source_ip=source_ip)
    events.lock_changed.send(Environment, environment=placement.environment, placement=placement, actor=user)
    placement_changed(placement.environment_id, placement.repository_id)
    dispatch_waiting(placement.environment_id, placement.repository_id)
    return placement
