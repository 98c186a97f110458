"""State changes made by the worker and the reaper (the actor is the system)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import Deployment, Environment, Status
from ..models.deployment import WAITING
from .approvals import approvals_needed, valid_approvals
from .audit import audit
from .queue import dispatch_next, environment_busy, next_waiting

BUILD, RELEASE = "build", "release"


def _lease() -> timezone.datetime:
    return timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)


@transaction.atomic
def deployment_claim(*, deployment_id: int, worker: str) -> tuple[Deployment, str] | None:
    """Take a waiting deployment if it is first in its environment's queue and
    nothing else runs there. Returns None when the claim is not ours to make
    (duplicate message, already running, not first in line, finished)."""
    row = Deployment.objects.filter(pk=deployment_id).values("environment_id", "status").first()
    if row is None or row["status"] not in WAITING:
        return None
    # Locking the environment row serialises claims per environment across workers.
    Environment.objects.select_for_update().filter(pk=row["environment_id"]).first()
    if environment_busy(row["environment_id"]):
        return None
    head = next_waiting(row["environment_id"])
    if head is None or head.pk != deployment_id:
        return None
    phase = RELEASE if head.status == Status.APPROVED else BUILD
    now = timezone.now()
    claimed = Deployment.objects.filter(pk=deployment_id, status=head.status).update(
        status=Status.RUNNING,
        started_at=head.started_at or now,
        lease_expires_at=_lease(),
        worker=worker[:200],
        attempts=head.attempts + 1,
    )
    if not claimed:
        return None
    deployment = Deployment.objects.select_related("repository", "environment", "requested_by").get(
        pk=deployment_id
    )
    audit("system", "deployment.start", deployment, worker=worker, phase=phase, attempt=deployment.attempts)
    return deployment, phase


def deployment_heartbeat(*, deployment_id: int) -> bool:
    """Extend the lease; returns True if the user asked to cancel."""
    Deployment.objects.filter(pk=deployment_id, status=Status.RUNNING).update(lease_expires_at=_lease())
    return Deployment.objects.filter(pk=deployment_id, cancel_requested=True).exists()


@transaction.atomic
def deployment_finish(*, deployment: Deployment, status: str, error: str = "") -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        status=status, error=error[:5000], finished_at=timezone.now(), lease_expires_at=None
    )
    deployment.status, deployment.error = status, error
    deployment.stages.filter(status__in=["pending", "running"]).update(
        status="cancelled" if status == Status.CANCELLED else "skipped"
    )
    audit("system", f"deployment.{status}", deployment, error=error[:500])
    dispatch_next(deployment.environment_id)


@transaction.atomic
def deployment_await_approval(*, deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(status=Status.AWAITING_APPROVAL, lease_expires_at=None)
    deployment.status = Status.AWAITING_APPROVAL
    audit("system", "deployment.awaiting_approval", deployment)
    # The environment is free while people decide; the next run may build.
    dispatch_next(deployment.environment_id)


@transaction.atomic
def deployment_gate(*, deployment: Deployment) -> str | None:
    """Checked right before the rollout, inside a transaction: returns why the
    deployment may not roll out, or None. A forged or replayed task message for
    an unapproved deployment stops here."""
    fresh = Deployment.objects.select_for_update().select_related("environment").get(pk=deployment.pk)
    needed = approvals_needed(fresh)
    if needed == 0:
        return None
    config_hash = fresh.environment.config_hash()
    have = len(valid_approvals(fresh, config_hash))
    if have >= needed:
        return None
    return (
        f"{fresh.environment} needs {needed} valid approval(s) of commit {fresh.short_sha}, "
        f"digest {fresh.short_digest} and the current configuration; {have} found"
    )


def reap() -> dict[str, int]:
    """Settle runs whose worker vanished, and restart queues whose message got lost."""
    counts = {"requeued": 0, "failed": 0, "dispatched": 0}
    expired = Deployment.objects.filter(status=Status.RUNNING, lease_expires_at__lt=timezone.now())
    for deployment in expired.select_related("environment"):
        with transaction.atomic():
            touched_target = deployment.stages.filter(name="rollout").exclude(status="pending").exists()
            if touched_target or deployment.attempts >= settings.MAX_ATTEMPTS:
                reason = (
                    "worker lost during the rollout; check the target"
                    if touched_target
                    else f"worker lost {deployment.attempts} time(s); giving up"
                )
                deployment_finish(deployment=deployment, status=Status.FAILED, error=reason)
                counts["failed"] += 1
            else:
                back = (
                    Status.APPROVED
                    if deployment.approvals.exists() and deployment.image_digest
                    else Status.QUEUED
                )
                updated = Deployment.objects.filter(pk=deployment.pk, status=Status.RUNNING).update(
                    status=back, lease_expires_at=None
                )
                if updated:
                    deployment.stages.filter(status="running").update(status="pending")
                    audit("system", "deployment.requeue", deployment, attempt=deployment.attempts)
                    dispatch_next(deployment.environment_id)
                    counts["requeued"] += 1
    waiting_envs = (
        Deployment.objects.filter(status__in=WAITING)
        .exclude(environment__deployments__status=Status.RUNNING)
        .values_list("environment_id", flat=True)
        .distinct()
    )
    for env_id in set(waiting_envs):
        with transaction.atomic():
            dispatch_next(env_id)
            counts["dispatched"] += 1
    return counts


__all__ = [
    "BUILD",
    "RELEASE",
    "deployment_await_approval",
    "deployment_claim",
    "deployment_finish",
    "deployment_gate",
    "deployment_heartbeat",
    "reap",
]
