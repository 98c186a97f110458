"""Reads the run lifecycle shares with the pages: what runs now, what waits next,
which approvals still bind. Services and the worker call them; they write nothing."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .. import permissions
from ..models import Approval, AuditEvent, Deployment, Environment, Phase, Placement, Repository, Status
from ..models.deployment import WAITING


def last_successful(environment: Environment, *, repository: Repository | None = None) -> Deployment | None:
    """What the environment runs now (of `repository`, when given), as Shipmate deployed it."""
    qs = Deployment.objects.filter(environment=environment, status=Status.SUCCEEDED).exclude(image_digest="")
    if repository is not None:
        qs = qs.filter(repository=repository)
    return qs.order_by("-finished_at", "-id").first()


def rollback_candidate(
    environment: Environment, repository: Repository | None = None
) -> tuple[Deployment | None, Deployment | None]:
    """(what runs now, the earlier successful release a rollback would ship)."""
    current = last_successful(environment, repository=repository)
    if current is None:
        return None, None
    previous = (
        Deployment.objects.filter(
            environment=environment,
            repository=current.repository,
            status=Status.SUCCEEDED,
            finished_at__lt=current.finished_at,
        )
        .exclude(image_digest="")
        .exclude(image_digest=current.image_digest)
        .order_by("-finished_at", "-id")
        .first()
    )
    return current, previous


def in_line(environment_id: int, repository_id: int) -> QuerySet[Deployment]:
    """The placement's deployments waiting to roll out, in request order: queued,
    building, built (Ready) and approved ones. Awaiting approval does not hold the line."""
    return Deployment.objects.filter(
        Q(status__in=WAITING) | Q(status=Status.RUNNING, phase=Phase.BUILD),
        environment_id=environment_id,
        repository_id=repository_id,
    ).order_by("created_at", "id")


def next_in_line(environment_id: int, repository_id: int) -> Deployment | None:
    """The deployment whose rollout comes next on the placement (it may still be building)."""
    return in_line(environment_id, repository_id).first()


def placement_busy(environment_id: int, repository_id: int) -> bool:
    """A rollout runs on the placement now (builds running ahead do not count)."""
    return Deployment.objects.filter(
        environment_id=environment_id,
        repository_id=repository_id,
        status=Status.RUNNING,
        phase=Phase.RELEASE,
    ).exists()


def hold_reason(environment: Environment, placement: Placement | None, *, break_glass: bool) -> str | None:
    """Why nothing may roll out to the placement now (its own lock, the environment's lock,
    a freeze window that a break-glass deployment may pass), or None. The one statement
    of the rule: the Deploy form, the request service and the worker's gate ask here."""
    if placement is not None and placement.is_locked:
        who = placement.locked_by.get_username() if placement.locked_by else "someone"
        return f"{placement} is locked by {who}: {placement.locked_reason}"
    if environment.is_locked:
        who = environment.locked_by.get_username() if environment.locked_by else "someone"
        return f"{environment} is locked by {who}: {environment.locked_reason}"
    freeze = environment.active_freeze()
    if freeze and not break_glass:
        return f"{environment} is in a freeze window ({freeze.reason})"
    return None


def valid_approvals(deployment: Deployment, config_hash: str) -> list[Approval]:
    """Approvals that still bind what would ship now: same commit, digest and
    configuration, not expired, from distinct people allowed to approve."""
    seen: set[int] = set()
    valid = []
    for approval in deployment.approvals.filter(decision=Approval.Decision.APPROVED).select_related(
        "approver"
    ):
        if approval.is_expired or not approval.binds(deployment, config_hash):
            continue
        if approval.approver_id in seen or not permissions.can_approve(approval.approver, deployment):
            continue
        if deployment.break_glass_reason and approval.approver_id == deployment.requested_by_id:
            continue  # break-glass always needs a second person
        seen.add(approval.approver_id)
        valid.append(approval)
    return valid


def approvals_needed(deployment: Deployment) -> int:
    needed = deployment.environment.needed_approvals
    # A break-glass deploy during a freeze always needs a second person.
    return max(needed, 1) if deployment.break_glass_reason else needed


def cancelled_by(deployment_id: int) -> str:
    """Who asked to cancel the run (the newest `deployment.cancel` event), or ""."""
    return (
        AuditEvent.objects.filter(
            action="deployment.cancel", object_type="deployment", object_id=str(deployment_id)
        )
        .order_by("-id")
        .values_list("actor_name", flat=True)
        .first()
        or ""
    )
