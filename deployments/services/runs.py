"""State changes made by the worker and the reaper (the actor is the system).

Every write of a running deployment is conditional on the claim token the worker
got: once the reaper has settled or requeued a run, the stalled worker that owned it
can no longer change it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..logs import publish_status
from ..models import Deployment, Environment, Placement, Stage, StageStatus, Status
from ..models.deployment import WAITING
from ..plans import placement_of, target_for
from ..selectors.runs import approvals_needed, next_waiting, placement_busy, valid_approvals
from .audit import audit
from .queue import dispatch_next

logger = logging.getLogger(__name__)
BUILD, RELEASE = "build", "release"


def _lease() -> datetime:
    return timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)


def hold_reason(environment: Environment, deployment: Deployment) -> str | None:
    """Why the deployment may not start now (environment or placement lock, freeze), or None."""
    placement = Placement.objects.filter(
        environment_id=environment.pk, repository_id=deployment.repository_id
    ).first()
    if placement is not None and placement.is_locked:
        who = placement.locked_by.get_username() if placement.locked_by else "someone"
        return f"{placement} is locked by {who}: {placement.locked_reason}"
    if environment.is_locked:
        who = environment.locked_by.get_username() if environment.locked_by else "someone"
        return f"{environment} is locked by {who}: {environment.locked_reason}"
    freeze = environment.active_freeze()
    if freeze and not deployment.break_glass_reason:
        return f"{environment} is in a freeze window ({freeze.reason})"
    return None


@transaction.atomic
def deployment_claim(*, deployment_id: int, worker: str) -> tuple[Deployment, str] | None:
    """Take a waiting deployment if it is first in its environment's queue and
    nothing else runs there. Returns None when the claim is not ours to make
    (duplicate message, already running, not first in line, finished, or the
    environment is locked or frozen: the queue holds until that ends)."""
    row = (
        Deployment.objects.filter(pk=deployment_id)
        .values("environment_id", "repository_id", "status")
        .first()
    )
    if row is None or row["status"] not in WAITING:
        return None
    # Locking the placement row serialises claims per placement across workers; two
    # applications in one environment run side by side.
    placement = (
        Placement.objects.select_for_update()
        .filter(environment_id=row["environment_id"], repository_id=row["repository_id"])
        .first()
    )
    if placement is None:
        return None  # the request service refuses these; a placement deleted meanwhile holds the run
    environment = Environment.objects.get(pk=row["environment_id"])
    if placement_busy(environment.pk, row["repository_id"]):
        return None
    head = next_waiting(environment.pk, row["repository_id"])
    if head is None or head.pk != deployment_id:
        return None
    if head.cancel_requested:
        _settle(head, Status.CANCELLED, "Cancelled before it started.", status=head.status)
        return None
    if hold_reason(environment, head):
        return None
    phase = RELEASE if head.status == Status.APPROVED else BUILD
    token = uuid.uuid4().hex
    claimed = Deployment.objects.filter(pk=deployment_id, status=head.status).update(
        status=Status.RUNNING,
        started_at=head.started_at or timezone.now(),
        lease_expires_at=_lease(),
        worker=worker[:200],
        attempts=head.attempts + 1,
        claim_token=token,
    )
    if not claimed:
        return None
    deployment = Deployment.objects.select_related("repository", "environment", "requested_by").get(
        pk=deployment_id
    )
    audit("system", "deployment.start", deployment, worker=worker, phase=phase, attempt=deployment.attempts)
    publish_status(deployment.pk, Status.RUNNING)
    return deployment, phase


def deployment_heartbeat(*, deployment_id: int, token: str) -> tuple[bool, bool]:
    """Extend the lease. Returns (still ours, cancel requested)."""
    owned = Deployment.objects.filter(pk=deployment_id, status=Status.RUNNING, claim_token=token).update(
        lease_expires_at=_lease()
    )
    cancel = Deployment.objects.filter(pk=deployment_id, cancel_requested=True).exists()
    return bool(owned), cancel


def cancel_requested(deployment_id: int) -> bool:
    return Deployment.objects.filter(pk=deployment_id, cancel_requested=True).exists()


def _settle(deployment: Deployment, outcome: str, error: str, **expect: Any) -> bool:
    """Finish `deployment` if it is still in the `expect`ed state; audit and move the queue on."""
    updated = Deployment.objects.filter(pk=deployment.pk, **expect).update(
        status=outcome, error=error[:5000], finished_at=timezone.now(), lease_expires_at=None
    )
    if not updated:
        return False
    deployment.status, deployment.error = outcome, error
    deployment.stages.filter(status__in=[StageStatus.PENDING, StageStatus.RUNNING]).update(
        status=StageStatus.CANCELLED if outcome == Status.CANCELLED else StageStatus.SKIPPED
    )
    audit("system", f"deployment.{outcome}", deployment, error=error[:500])
    publish_status(deployment.pk, outcome, end=True)
    dispatch_next(deployment.environment_id, deployment.repository_id)
    return True


@transaction.atomic
def deployment_finish(*, deployment: Deployment, status: str, error: str = "", token: str) -> bool:
    """The worker settles its run; False if the run is no longer its own."""
    return _settle(deployment, status, error, status=Status.RUNNING, claim_token=token)


@transaction.atomic
def deployment_await_approval(*, deployment: Deployment, token: str, reason: str = "") -> bool:
    """Park the run for people to decide; the environment is free meanwhile."""
    if cancel_requested(deployment.pk):
        return _settle(deployment, Status.CANCELLED, "Cancelled.", status=Status.RUNNING, claim_token=token)
    updated = Deployment.objects.filter(pk=deployment.pk, status=Status.RUNNING, claim_token=token).update(
        status=Status.AWAITING_APPROVAL, lease_expires_at=None
    )
    if not updated:
        return False
    deployment.status = Status.AWAITING_APPROVAL
    Stage.objects.filter(deployment=deployment, name="approval").update(
        status=StageStatus.RUNNING, started_at=timezone.now(), finished_at=None
    )
    action = "deployment.approval_voided" if reason else "deployment.awaiting_approval"
    audit("system", action, deployment, reason=reason)
    publish_status(deployment.pk, Status.AWAITING_APPROVAL)
    dispatch_next(deployment.environment_id, deployment.repository_id)
    return True


@transaction.atomic
def deployment_gate(*, deployment: Deployment) -> tuple[str | None, str]:
    """Checked right before the rollout, inside a transaction. Returns (why the
    deployment may not roll out or None, the configuration hash it was checked
    against). A forged or replayed task message for an unapproved deployment stops
    here, and so does a run whose environment was locked or frozen meanwhile."""
    fresh = Deployment.objects.select_for_update().select_related("environment").get(pk=deployment.pk)
    environment = fresh.environment
    config_hash = placement_of(fresh).config_hash()
    held = hold_reason(environment, fresh)
    if held:
        return held, config_hash
    needed = approvals_needed(fresh)
    if needed == 0:
        return None, config_hash
    have = len(valid_approvals(fresh, config_hash))
    if have >= needed:
        return None, config_hash
    return (
        f"{environment} needs {needed} valid approval(s) of commit {fresh.short_sha}, "
        f"digest {fresh.short_digest} and the current configuration; {have} found"
    ), config_hash


SHUTDOWN = "Shipmate was stopped"


def deployments_interrupt(*, worker: str, reason: str = SHUTDOWN) -> int:
    """The worker is shutting down: ask its running deployments to stop, so that each
    cancels its step and ends with `reason` instead of running on or being cut off."""
    return Deployment.objects.filter(status=Status.RUNNING, worker=worker).update(
        cancel_requested=True, stop_reason=reason[:200]
    )


def deployments_settle_stopped(*, worker: str, reason: str = SHUTDOWN) -> int:
    """Settle the runs `worker` left behind; call it only when that worker no longer runs.

    A run cut off before its rollout is cancelled; one cut off in the rollout failed,
    with what the target runs now, because a person has to look at it."""
    settled = 0
    for deployment in Deployment.objects.filter(status=Status.RUNNING, worker=worker).select_related(
        "environment", "repository"
    ):
        stage = deployment.stages.filter(status=StageStatus.RUNNING).values_list("name", flat=True).first()
        where = f" during the {stage} stage" if stage else ""
        expect = {"status": Status.RUNNING, "claim_token": deployment.claim_token}
        with transaction.atomic():
            if stage in ("rollout", "verify"):
                running = _what_target_runs(deployment)
                ok = _settle(deployment, Status.FAILED, f"{reason}{where}; {running}.", **expect)
            else:
                ok = _settle(deployment, Status.CANCELLED, f"Cancelled: {reason}{where}.", **expect)
        settled += ok
    return settled


def reap() -> dict[str, int]:
    """Settle runs whose worker vanished, and restart queues whose message got lost."""
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "dispatched": 0}
    now = timezone.now()
    expired = Deployment.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    for deployment in expired.select_related("environment", "repository"):
        with transaction.atomic():
            counts[_reap_one(deployment, now)] += 1
    running = set(
        Deployment.objects.filter(status=Status.RUNNING).values_list("environment_id", "repository_id")
    )
    waiting = set(
        Deployment.objects.filter(status__in=WAITING).values_list("environment_id", "repository_id")
    )
    for env_id, repository_id in waiting - running:
        with transaction.atomic():
            dispatch_next(env_id, repository_id)
            counts["dispatched"] += 1
    return counts


def _reap_one(deployment: Deployment, now: datetime) -> str:
    expect = {"status": Status.RUNNING, "lease_expires_at__lt": now, "claim_token": deployment.claim_token}
    lost = deployment.lost_count + 1
    Deployment.objects.filter(pk=deployment.pk).update(lost_count=lost)
    if deployment.cancel_requested:
        _settle(deployment, Status.CANCELLED, "Cancelled; its worker was lost.", **expect)
        return "cancelled"
    touched_target = deployment.stages.filter(name="rollout").exclude(status=StageStatus.PENDING).exists()
    if touched_target:
        running = _what_target_runs(deployment)
        _settle(deployment, Status.FAILED, f"worker lost during the rollout; {running}", **expect)
        return "failed"
    if lost >= settings.MAX_ATTEMPTS:
        _settle(deployment, Status.FAILED, f"worker lost {lost} time(s); giving up", **expect)
        return "failed"
    back = Status.APPROVED if deployment.approvals.exists() and deployment.image_digest else Status.QUEUED
    if not Deployment.objects.filter(pk=deployment.pk, **expect).update(status=back, lease_expires_at=None):
        return "dispatched"
    deployment.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.PENDING)
    audit("system", "deployment.requeue", deployment, lost=lost)
    publish_status(deployment.pk, back)
    dispatch_next(deployment.environment_id, deployment.repository_id)
    return "requeued"


def _what_target_runs(deployment: Deployment) -> str:
    """Reconcile with the target: say what it runs now, so a person can decide."""
    try:
        target = target_for(placement_of(deployment))
        try:
            current = target.current()
        finally:
            target.close()
    except Exception as exc:  # the target may be the reason the worker died
        return f"the target could not be asked what it runs ({exc.__class__.__name__}); check it"
    if current == deployment.image_digest:
        return f"the target runs this deployment's image {current}; check its health"
    return f"the target runs {current or 'nothing'}; check it"
