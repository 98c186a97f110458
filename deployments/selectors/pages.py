"""Reads for pages. Query counts do not grow with the number of rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.utils import timezone

from .. import permissions
from ..models import Approval, Deployment, Environment, Phase, Placement, Repository, Stage, Status
from .runs import approvals_needed, in_line, valid_approvals

_ACTIVE = {Status.QUEUED, Status.RUNNING, Status.AWAITING_APPROVAL, Status.APPROVED, Status.READY}


@dataclass
class PlacementRow:
    """One application in the environment page: what runs, what rolls out, what builds ahead, what waits."""

    placement: Placement
    current: Deployment | None
    rolling_out: Deployment | None = None
    building: list[Deployment] = field(default_factory=list)
    waiting: list[Deployment] = field(default_factory=list)
    awaiting_approval: list[Deployment] = field(default_factory=list)


def _base() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("repository", "environment", "requested_by")


def visible_environments(user: Any) -> list[Environment]:
    envs = Environment.objects.prefetch_related("deploy_groups", "approve_groups", "freeze_windows")
    return [env for env in envs if permissions.can_view_environment(user, env)]


def with_current(placements: QuerySet[Placement]) -> list[Placement]:
    """The placements, each with `current`: the deployment that last succeeded there (what
    runs now), or None. Two queries, however many placements and deployments."""
    latest = Deployment.objects.filter(
        environment=OuterRef("environment"), repository=OuterRef("repository"), status=Status.SUCCEEDED
    ).order_by("-finished_at", "-id")
    rows = list(placements.annotate(current_id=Subquery(latest.values("pk")[:1])))
    current = _base().in_bulk([p.current_id for p in rows if p.current_id])
    for placement in rows:
        placement.current = current.get(placement.current_id)  # type: ignore[attr-defined]
    return rows


def placements_with_current(user: Any) -> list[Placement]:
    """The placements in the environments `user` sees, each with `current` (with_current)."""
    return with_current(
        Placement.objects.filter(environment__in=visible_environments(user))
        .select_related("repository", "environment", "locked_by")
        .order_by("environment__order", "environment__name", "repository__name")
    )


def locks_in_force(user: Any) -> tuple[list[Environment], list[Placement]]:
    """Environment locks that have not expired and placement locks, in the environments
    `user` sees."""
    envs = [env.pk for env in visible_environments(user)]
    environments = (
        Environment.objects.filter(pk__in=envs, locked_at__isnull=False)
        .filter(Q(lock_expires_at__isnull=True) | Q(lock_expires_at__gt=timezone.now()))
        .select_related("locked_by")
        .order_by("order", "name")
    )
    placements = (
        Placement.objects.filter(environment_id__in=envs, locked_at__isnull=False)
        .select_related("repository", "environment", "locked_by")
        .order_by("environment__order", "environment__name", "repository__name")
    )
    return list(environments), list(placements)


def environment_page(environment: Environment) -> list[PlacementRow]:
    """Every application placed in the environment, in a constant number of queries."""
    placements = with_current(
        Placement.objects.filter(environment=environment)
        .select_related("repository", "environment", "locked_by")
        .order_by("repository__name")
    )
    rows = {p.repository_id: PlacementRow(p, p.current) for p in placements}  # type: ignore[attr-defined]
    active = _base().filter(environment=environment, status__in=_ACTIVE).order_by("created_at", "id")
    for d in active:
        row = rows.get(d.repository_id)
        if row is None:
            continue  # its placement was removed; the deployment page still shows it
        if d.status == Status.RUNNING and d.phase == Phase.RELEASE:
            row.rolling_out = d
        elif d.status == Status.RUNNING:
            row.building.append(d)
        elif d.status == Status.AWAITING_APPROVAL:
            row.awaiting_approval.append(d)
        else:
            row.waiting.append(d)
    return list(rows.values())


def deployment_history(
    user: Any, *, repository: str = "", environment: str = "", status: str = "", before: int | None = None
) -> QuerySet[Deployment]:
    """Newest first; `before` (a deployment id) pages on to the rows older than that one,
    with a bound the created_at index serves, however deep the page."""
    envs = [e.pk for e in visible_environments(user)]
    approvals = Approval.objects.filter(decision=Approval.Decision.APPROVED).select_related("approver")
    qs = (
        _base()
        .select_related("rollback_of")
        .prefetch_related(Prefetch("approvals", queryset=approvals, to_attr="approved_by"))
        .filter(environment_id__in=envs)
    )
    if repository:
        qs = qs.filter(repository__name=repository)
    if environment:
        qs = qs.filter(environment__name=environment)
    if status:
        qs = qs.filter(status=status)
    if before is not None:
        edge = Deployment.objects.filter(pk=before).values("created_at", "pk").first()
        if edge is not None:
            qs = qs.filter(created_at__lte=edge["created_at"]).filter(
                Q(created_at__lt=edge["created_at"]) | Q(pk__lt=edge["pk"])
            )
    return qs.order_by("-created_at", "-id")


def deployment_detail(pk: int) -> Deployment:
    return (
        _base()
        .select_related("rollback_of", "replaced")
        .prefetch_related(
            Prefetch("stages", queryset=Stage.objects.order_by("position")),
            "approvals__approver",
        )
        .get(pk=pk)
    )


def queue_position(deployment: Deployment) -> int | None:
    """1-based place in the rollout line of the deployment's placement (application ×
    environment), for one that waits or builds ahead; None once it rolls out or ended."""
    line = in_line(deployment.environment_id, deployment.repository_id)
    if not line.filter(pk=deployment.pk).exists():
        return None
    ahead = line.filter(
        Q(created_at__lt=deployment.created_at) | Q(created_at=deployment.created_at, id__lt=deployment.pk)
    )
    return ahead.count() + 1


def deployable_choices(user: Any) -> tuple[list[Repository], list[Environment], dict[int, list[int]]]:
    """What the Deploy form offers: applications, the environments the user may deploy
    to, and for each application the environments where it is placed."""
    envs = [e for e in visible_environments(user) if permissions.can_deploy(user, e)]
    placed: dict[int, list[int]] = {}
    for repo_id, env_id in Placement.objects.filter(enabled=True, environment__in=envs).values_list(
        "repository_id", "environment_id"
    ):
        placed.setdefault(repo_id, []).append(env_id)
    return list(Repository.objects.filter(pk__in=placed)), envs, placed


def approval_inbox(user: Any) -> list[Deployment]:
    pending = (
        _base()
        .filter(status=Status.AWAITING_APPROVAL)
        .prefetch_related("environment__approve_groups", "approvals")
    )
    return [d for d in pending.order_by("created_at") if permissions.can_approve(user, d)]


def approval_inbox_count(user: Any) -> int:
    """How many deployments `approval_inbox` lists, in one query (every page's nav shows it)."""
    pending = Deployment.objects.filter(status=Status.AWAITING_APPROVAL).filter(permissions.approvable(user))
    return pending.values("pk").distinct().count()


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Which variables changed. Values are never compared in the clear: the
    snapshots hold keyed hashes, and secret ones are shown by name only."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        kind = "added" if before is None else "removed" if after is None else "changed"
        secret = bool((after or before or {}).get("secret"))
        changes.append({"name": name, "change": kind, "secret": secret})
    return changes


def approval_context(deployment: Deployment) -> dict[str, Any]:

    env = deployment.environment
    previous = deployment.replaced or (
        _base()
        .filter(environment=env, repository_id=deployment.repository_id, status=Status.SUCCEEDED)
        .exclude(pk=deployment.pk)
        .order_by("-finished_at", "-id")
        .first()
    )
    if deployment.is_finished or deployment.status == Status.RUNNING and deployment.config_snapshot:
        snapshot, config_hash = deployment.config_snapshot, deployment.config_hash
    else:
        placement = Placement.objects.get(environment=env, repository_id=deployment.repository_id)
        snapshot, config_hash = placement.config_snapshot(), placement.config_hash()
    valid = valid_approvals(deployment, config_hash) if deployment.image_digest else []
    approvals = []
    for approval in deployment.approvals.all():
        state = "valid" if approval in valid else "expired" if approval.is_expired else "void"
        if approval.decision == approval.Decision.REJECTED:
            state = "rejected"
        approvals.append({"approval": approval, "state": state})
    return {
        "previous": previous,
        "config_changes": config_diff(previous.config_snapshot if previous else {}, snapshot),
        "needed": approvals_needed(deployment),
        "valid_count": len(valid),
        "approvals": approvals,
    }


def approval_waiting_on(user: Any, deployment: Deployment) -> dict[str, Any] | None:
    """For a pending approval the user cannot decide: which groups can (admins always
    can), and whether the user is only held back by the own-deployment rule."""
    if deployment.status != Status.AWAITING_APPROVAL or permissions.can_approve(user, deployment):
        return None
    env = deployment.environment
    groups = sorted({g.name for g in env.approve_groups.all()} | {permissions.ADMINS})
    return {
        "groups": groups,
        "own": deployment.requested_by_id == user.pk and permissions.can_approve_environment(user, env),
    }


def audit_events(
    *, actor: str = "", action: str = "", object_type: str = "", q: str = "", before: int | None = None
) -> QuerySet[Any]:
    """Newest first; `before` (an event id) pages on to the events older than that one."""
    from django.db.models import Q

    from ..models import AuditEvent

    qs = AuditEvent.objects.all()
    if actor:
        qs = qs.filter(actor_name=actor)
    if action:
        qs = qs.filter(action=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if q:
        qs = qs.filter(
            Q(object_repr__icontains=q) | Q(commit_sha__startswith=q) | Q(image_digest__icontains=q)
        )
    if before is not None:
        edge = AuditEvent.objects.filter(pk=before).values("created_at", "pk").first()
        if edge is not None:
            qs = qs.filter(created_at__lte=edge["created_at"]).filter(
                Q(created_at__lt=edge["created_at"]) | Q(pk__lt=edge["pk"])
            )
    return qs.order_by("-created_at", "-id")


def audit_actions() -> list[str]:
    from ..models import AuditEvent

    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())
