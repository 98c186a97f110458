"""The run lifecycle, in one place: claiming, the heartbeat, and the one function that
changes a deployment's status once it was requested (`transition`).

A placement (one application in one environment) rolls out one deployment at a time,
in request order. Builds run ahead: a queued deployment is claimed for its build phase
(checkout, build, test, push) at once, whatever else runs; once built it takes its turn
(`deployment_take_turn`), or parks as Ready until the rollouts before it ended.

Every write of a running deployment is conditional on the claim token the worker got:
once the reaper has settled or requeued a run, the stalled worker that owned it can no
longer change it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..feed import placement_changed
from ..logs import publish_status
from ..models import Deployment, Phase, Placement, Stage, StageStatus, Status
from ..models.deployment import FINISHED, RELEASABLE, WAITING
from ..plans import placement_of, target_for
from ..selectors.runs import (
    approvals_needed,
    cancelled_by,
    hold_reason,
    next_in_line,
    placement_busy,
    valid_approvals,
)
from . import events
from .audit import audit
from .queue import dispatch_build, dispatch_next, dispatch_waiting

logger = logging.getLogger(__name__)


def _lease() -> datetime:
    return timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)


# --- the one status transition ------------------------------------------------


def transition(
    deployment: Deployment,
    to: str,
    *,
    expect: dict[str, Any],
    action: str = "",
    error: str | None = None,
    details: dict[str, Any] | None = None,
    record: bool = True,
    actor: Any = None,
    **fields: Any,
) -> bool:
    """Move `deployment` to status `to` if it is still as `expect`ed; False if it is not
    (someone else moved it first). Writes the audit event, tells live viewers, settles
    the stages of a finished run, and moves the placement's queue on. Call it inside a
    transaction. `record=False` when the caller writes its own audit event (a person's
    cancel, approval or rejection); `actor` is that person, for notifications."""
    updates: dict[str, Any] = {"status": to, **fields}
    if error is not None:
        updates["error"] = error[:5000]
    if to in FINISHED:
        updates.update(finished_at=timezone.now(), lease_expires_at=None, phase=Phase.NONE)
    elif to != Status.RUNNING:
        updates.update(lease_expires_at=None, phase=Phase.NONE)
    if not Deployment.objects.filter(pk=deployment.pk, **expect).update(**updates):
        return False
    for key, value in updates.items():
        setattr(deployment, key, value)
    if to in FINISHED:
        # Pending stages, and the approval stage of a run that was waiting for people.
        deployment.stages.filter(status__in=[StageStatus.PENDING, StageStatus.RUNNING]).update(
            status=StageStatus.CANCELLED if to in (Status.CANCELLED, Status.REJECTED) else StageStatus.SKIPPED
        )
    if record:
        extra = dict(details or {})
        if error:
            extra.setdefault("error", error[:500])
        audit("system", action or f"deployment.{to}", deployment, **extra)
    if action != "deployment.requeue":  # a run the reaper puts back is not news
        events.deployment_event.send(Deployment, deployment=deployment, event=to, actor=actor)
    publish_status(deployment.pk, to, end=to in FINISHED)
    placement_changed(deployment.environment_id, deployment.repository_id)
    if to != Status.RUNNING:
        dispatch_next(deployment.environment_id, deployment.repository_id)
    return True


def _running(deployment: Deployment, token: str) -> dict[str, Any]:
    return {"status": Status.RUNNING, "claim_token": token}


# --- claiming -----------------------------------------------------------------


@transaction.atomic
def deployment_claim(*, deployment_id: int, worker: str) -> tuple[Deployment, str] | None:
    """Take a waiting deployment for its next phase. Returns (deployment, phase), or None
    when the claim is not ours to make (duplicate message, already running or finished,
    a rollout not first in line or its placement busy, a lock or freeze: the queue holds
    until that ends)."""
    row = (
        Deployment.objects.filter(pk=deployment_id)
        .values("environment_id", "repository_id", "status")
        .first()
    )
    if row is None or row["status"] not in WAITING:
        return None
    # Locking the placement row serialises claims and turns per placement across
    # workers; two applications in one environment run side by side.
    placement = (
        Placement.objects.select_for_update()
        .select_related("environment")
        .filter(environment_id=row["environment_id"], repository_id=row["repository_id"])
        .first()
    )
    if placement is None:
        return None  # the request service refuses these; a placement deleted meanwhile holds the run
    head = Deployment.objects.get(pk=deployment_id)
    if head.status not in WAITING:
        return None
    if head.cancel_requested:
        transition(
            head,
            Status.CANCELLED,
            expect={"status": head.status},
            error=cancel_message(head.pk, " before it started"),
        )
        return None
    if hold_reason(placement.environment, placement, break_glass=bool(head.break_glass_reason)):
        return None
    if head.status in RELEASABLE:
        if placement_busy(placement.environment_id, placement.repository_id):
            return None
        first = next_in_line(placement.environment_id, placement.repository_id)
        if first is None or first.pk != head.pk:
            return None
        phase = Phase.RELEASE
    else:
        phase = Phase.BUILD
    claimed = transition(
        head,
        Status.RUNNING,
        expect={"status": head.status},
        action="deployment.start",
        details={"worker": worker, "phase": phase, "attempt": head.attempts + 1},
        phase=phase,
        started_at=head.started_at or timezone.now(),
        lease_expires_at=_lease(),
        worker=worker[:200],
        attempts=head.attempts + 1,
        claim_token=uuid.uuid4().hex,
    )
    if not claimed:
        return None
    deployment = Deployment.objects.select_related("repository", "environment", "requested_by").get(
        pk=deployment_id
    )
    return deployment, phase


@transaction.atomic
def deployment_take_turn(*, deployment: Deployment, token: str) -> bool:
    """A built deployment asks for its rollout turn. True: it is first in line and nothing
    rolls out on its placement, so it goes on in the release phase now. False: it parks as
    Ready (built and tested); the rollout before it moves the queue on when it ends."""
    placement = (
        Placement.objects.select_for_update()
        .select_related("environment")
        .get(environment_id=deployment.environment_id, repository_id=deployment.repository_id)
    )
    first = next_in_line(placement.environment_id, placement.repository_id)
    free = not placement_busy(placement.environment_id, placement.repository_id)
    held = hold_reason(placement.environment, placement, break_glass=bool(deployment.break_glass_reason))
    if free and not held and first is not None and first.pk == deployment.pk:
        updated = Deployment.objects.filter(pk=deployment.pk, **_running(deployment, token)).update(
            phase=Phase.RELEASE
        )
        deployment.phase = Phase.RELEASE
        return bool(updated)
    waiting_for = held or ("a rollout" if not free else f"#{first.pk}" if first is not None else "its turn")
    transition(
        deployment,
        Status.READY,
        expect=_running(deployment, token),
        action="deployment.ready",
        details={"waiting_for": waiting_for},
    )
    return False


# --- the heartbeat ------------------------------------------------------------


def deployment_heartbeat(*, deployment_id: int, token: str) -> tuple[bool, bool]:
    """Extend the lease. Returns (still ours, cancel requested)."""
    owned = Deployment.objects.filter(pk=deployment_id, status=Status.RUNNING, claim_token=token).update(
        lease_expires_at=_lease()
    )
    return bool(owned), cancel_requested(deployment_id)


def cancel_requested(deployment_id: int) -> bool:
    return Deployment.objects.filter(pk=deployment_id, cancel_requested=True).exists()


class Heartbeat(threading.Thread):
    """Extends the lease while the run is alive and notices a cancel request."""

    def __init__(self, deployment_id: int, token: str, interval: float = 0.5) -> None:
        super().__init__(name=f"heartbeat-{deployment_id}", daemon=True)
        self.deployment_id = deployment_id
        self.token = token
        self.interval = interval
        self.cancelled = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.wait(self.interval):
                try:
                    owned, cancel = deployment_heartbeat(deployment_id=self.deployment_id, token=self.token)
                except Exception:  # a busy database must not kill the run
                    logger.warning("heartbeat for deployment %s failed", self.deployment_id, exc_info=True)
                    continue
                if cancel or not owned:
                    # Not owned: the reaper settled or requeued the run; stop touching it.
                    self.cancelled.set()
        finally:
            connection.close()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


# --- the worker settles its run -----------------------------------------------


def cancel_message(deployment_id: int, where: str = "") -> str:
    """The error of a cancelled run names who asked ("Cancelled by alice during the test
    stage."): the page, the API and notifications all show it."""
    who = cancelled_by(deployment_id)
    return f"Cancelled by {who}{where}." if who else f"Cancelled{where}."


@transaction.atomic
def deployment_finish(*, deployment: Deployment, status: str, error: str = "", token: str) -> bool:
    """The worker settles its run; False if the run is no longer its own."""
    return transition(deployment, status, expect=_running(deployment, token), error=error)


@transaction.atomic
def deployment_await_approval(*, deployment: Deployment, token: str, reason: str = "") -> bool:
    """Park the run for people to decide; the placement is free meanwhile."""
    expect = _running(deployment, token)
    if cancel_requested(deployment.pk):
        return transition(deployment, Status.CANCELLED, expect=expect, error=cancel_message(deployment.pk))
    parked = transition(
        deployment,
        Status.AWAITING_APPROVAL,
        expect=expect,
        action="deployment.approval_voided" if reason else "deployment.awaiting_approval",
        details={"reason": reason},
    )
    if parked:
        Stage.objects.filter(deployment=deployment, name="approval").update(
            status=StageStatus.RUNNING, started_at=timezone.now(), finished_at=None
        )
    return parked


@transaction.atomic
def deployment_gate(*, deployment: Deployment) -> tuple[str | None, str]:
    """Checked right before the rollout, inside a transaction. Returns (why the
    deployment may not roll out or None, the configuration hash it was checked
    against). A forged or replayed task message for an unapproved deployment stops
    here, and so does a run whose environment was locked or frozen meanwhile."""
    fresh = Deployment.objects.select_for_update().select_related("environment").get(pk=deployment.pk)
    environment = fresh.environment
    placement = placement_of(fresh)
    config_hash = placement.config_hash()
    held = hold_reason(environment, placement, break_glass=bool(fresh.break_glass_reason))
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


# --- stopped workers and the reaper -------------------------------------------

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
        expect = _running(deployment, deployment.claim_token)
        with transaction.atomic():
            if stage in ("rollout", "verify"):
                running = _what_target_runs(deployment)
                ok = transition(
                    deployment, Status.FAILED, expect=expect, error=f"{reason}{where}; {running}."
                )
            else:
                ok = transition(
                    deployment, Status.CANCELLED, expect=expect, error=f"Cancelled: {reason}{where}."
                )
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
    with transaction.atomic():
        counts["dispatched"] = dispatch_waiting()
    return counts


def _reap_one(deployment: Deployment, now: datetime) -> str:
    expect = {"status": Status.RUNNING, "lease_expires_at__lt": now, "claim_token": deployment.claim_token}
    lost = deployment.lost_count + 1
    Deployment.objects.filter(pk=deployment.pk).update(lost_count=lost)
    if deployment.cancel_requested:
        transition(deployment, Status.CANCELLED, expect=expect, error="Cancelled; its worker was lost.")
        return "cancelled"
    touched_target = deployment.stages.filter(name="rollout").exclude(status=StageStatus.PENDING).exists()
    if touched_target:
        running = _what_target_runs(deployment)
        transition(
            deployment, Status.FAILED, expect=expect, error=f"worker lost during the rollout; {running}"
        )
        return "failed"
    if lost >= settings.MAX_ATTEMPTS:
        transition(deployment, Status.FAILED, expect=expect, error=f"worker lost {lost} time(s); giving up")
        return "failed"
    back = Status.QUEUED
    if deployment.image_digest and deployment.phase == Phase.RELEASE:
        back = Status.APPROVED if deployment.approvals.exists() else Status.READY
    elif deployment.image_digest and deployment.approvals.exists():
        back = Status.APPROVED
    if not transition(deployment, back, expect=expect, action="deployment.requeue", details={"lost": lost}):
        return "dispatched"
    deployment.stages.filter(status=StageStatus.RUNNING).update(status=StageStatus.PENDING)
    if back == Status.QUEUED:
        dispatch_build(deployment.pk)
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
