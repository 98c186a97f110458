"""Reads the run lifecycle shares with the pages: what runs now, what waits next,
which approvals still bind. Services and the worker call them; they write nothing."""

from __future__ import annotations

from .. import permissions
from ..models import Approval, Deployment, Environment, Repository, Status
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


def next_waiting(environment_id: int, repository_id: int) -> Deployment | None:
    return (
        Deployment.objects.filter(
            environment_id=environment_id, repository_id=repository_id, status__in=WAITING
        )
        .order_by("created_at", "id")
        .first()
    )


def placement_busy(environment_id: int, repository_id: int) -> bool:
    return Deployment.objects.filter(
        environment_id=environment_id, repository_id=repository_id, status=Status.RUNNING
    ).exists()


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
