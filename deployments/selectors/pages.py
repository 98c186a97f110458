"""Reads for pages. Query counts do not grow with the number of rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Min, OuterRef, Prefetch, QuerySet, Subquery

from . import permissions
from .models import Approval, Deployment, Environment, Placement, Repository, Stage, Status
from .models.deployment import WAITING

_ACTIVE = {Status.QUEUED, Status.RUNNING, Status.AWAITING_APPROVAL, Status.APPROVED}


@dataclass
class EnvironmentRow:
    environment: Environment
    current: Deployment | None
    running: Deployment | None
    waiting: list[Deployment]
    awaiting_approval: list[Deployment]
    can_deploy: bool


def _base() -> QuerySet[Deployment]:
    return Deployment.objects.select_related("repository", "environment", "requested_by")


def visible_environments(user: Any) -> list[Environment]:
    envs = Environment.objects.prefetch_related("deploy_groups", "approve_groups", "freeze_windows")
    return [env for env in envs if permissions.can_view_environment(user, env)]


def environment_overview(user: Any) -> list[EnvironmentRow]:
    envs = visible_environments(user)
    ids = [e.pk for e in envs]
    active = list(_base().filter(environment_id__in=ids, status__in=_ACTIVE).order_by("created_at", "id"))
    current: dict[int, Deployment] = {}
    for dep in _base().filter(environment_id__in=ids, status=Status.SUCCEEDED).order_by("finished_at", "id"):
        current[dep.environment_id] = dep  # the last one wins
    rows = []
    for env in envs:
        mine = [d for d in active if d.environment_id == env.pk]
        rows.append(
            EnvironmentRow(
                environment=env,
                current=current.get(env.pk),
                running=next((d for d in mine if d.status == Status.RUNNING), None),
                waiting=[d for d in mine if d.status in WAITING],
                awaiting_approval=[d for d in mine if d.status == Status.AWAITING_APPROVAL],
                can_deploy=permissions.can_deploy(user, env),
            )
        )
    return rows


@dataclass
class Cell:
    """One application in one environment on the dashboard."""

    placement: Placement
    current: Deployment | None  # what runs there now, as Shipmate deployed it
    running: Deployment | None
    queued: int  # waiting or awaiting approval
    behind: str = ""  # the environment to the left that runs newer code, if any
    can_deploy: bool = False


@dataclass
class Column:
    environment: Environment
    frozen: Any  # the freeze window in force now, or None


@dataclass
class MatrixRow:
    repository: Repository
    cells: list[Cell | None]  # one per column; None where the application is not placed


def placement_matrix(user: Any) -> tuple[list[Column], list[MatrixRow]]:
    """Applications × environments, in lifecycle order, in a constant number of queries."""
    envs = visible_environments(user)
    ids = [e.pk for e in envs]
    latest = Deployment.objects.filter(
        environment=OuterRef("environment"), repository=OuterRef("repository"), status=Status.SUCCEEDED
    ).order_by("-finished_at", "-id")
    placements = list(
        Placement.objects.filter(environment_id__in=ids, enabled=True)
        .select_related("repository", "environment")
        .annotate(current_id=Subquery(latest.values("pk")[:1]))
    )
    current = _base().in_bulk([p.current_id for p in placements if p.current_id])
    queued = {
        (row["environment_id"], row["repository_id"]): row["n"]
        for row in Deployment.objects.filter(
            environment_id__in=ids, status__in=[*WAITING, Status.AWAITING_APPROVAL]
        )
        .values("environment_id", "repository_id")
        .annotate(n=Count("id"))
    }
    running = {
        (d.environment_id, d.repository_id): d
        for d in Deployment.objects.filter(environment_id__in=ids, status=Status.RUNNING)
    }
    # When each running commit first appeared: code that appeared later is newer.
    commits = {d.commit_sha for d in current.values() if d.commit_sha}
    first_seen = {
        (row["repository_id"], row["commit_sha"]): row["first"]
        for row in Deployment.objects.filter(
            repository_id__in={d.repository_id for d in current.values()}, commit_sha__in=commits
        )
        .values("repository_id", "commit_sha")
        .annotate(first=Min("created_at"))
    }
    deployable = {env.pk: permissions.can_deploy(user, env) for env in envs}
    column = {env.pk: i for i, env in enumerate(envs)}
    rows: dict[int, MatrixRow] = {}
    for p in sorted(placements, key=lambda p: p.repository.name):
        row = rows.setdefault(p.repository_id, MatrixRow(p.repository, [None] * len(envs)))
        key = (p.environment_id, p.repository_id)
        row.cells[column[p.environment_id]] = Cell(
            placement=p,
            current=current.get(p.current_id) if p.current_id else None,
            running=running.get(key),
            queued=queued.get(key, 0),
            can_deploy=deployable[p.environment_id],
        )
    for row in rows.values():
        _mark_behind(row, first_seen)
    columns = [Column(env, env.active_freeze()) for env in envs]  # freeze windows are prefetched
    return columns, list(rows.values())


def _mark_behind(row: MatrixRow, first_seen: dict[tuple[int, str], Any]) -> None:
    """Mark a cell that runs older code than the nearest placed cell to its left."""
    left: Cell | None = None
    for cell in row.cells:
        if cell is None:
            continue
        if (
            left is not None
            and left.current
            and cell.current
            and left.current.commit_sha != cell.current.commit_sha
        ):
            mine = first_seen.get((row.repository.pk, cell.current.commit_sha))
            theirs = first_seen.get((row.repository.pk, left.current.commit_sha))
            if mine and theirs and theirs > mine:
                cell.behind = left.placement.environment.name
        left = cell


def deployment_history(
    user: Any, *, repository: str = "", environment: str = "", status: str = ""
) -> QuerySet[Deployment]:
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
    """1-based position among the deployments waiting for this environment."""
    if deployment.status not in WAITING:
        return None
    ahead = (
        Deployment.objects.filter(environment_id=deployment.environment_id, status__in=WAITING)
        .filter(created_at__lt=deployment.created_at)
        .count()
    )
    return ahead + 1


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
    return len(approval_inbox(user))


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
    from .services.approvals import approvals_needed, valid_approvals

    env = deployment.environment
    previous = deployment.replaced or (
        _base()
        .filter(environment=env, status=Status.SUCCEEDED)
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


def audit_events(*, actor: str = "", action: str = "", object_type: str = "", q: str = "") -> QuerySet[Any]:
    from django.db.models import Q

    from .models import AuditEvent

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
    return qs.order_by("-created_at", "-id")


def audit_actions() -> list[str]:
    from .models import AuditEvent

    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def placement_overview(user: Any, placement: Placement) -> dict[str, Any]:
    """The placement page: its queue, history, and what a rollback or a promotion would ship."""
    from .services.deployments import last_successful, rollback_candidate

    env, repo = placement.environment, placement.repository
    mine = _base().filter(environment=env, repository=repo)
    current, rollback_to = rollback_candidate(env, repo)
    earlier = (
        Placement.objects.filter(repository=repo, enabled=True, environment__order__lt=env.order)
        .select_related("environment")
        .order_by("-environment__order")
        .first()
    )
    promote_from = last_successful(earlier.environment, repository=repo) if earlier else None
    if promote_from is not None and not permissions.can_view_environment(user, earlier.environment):
        promote_from = None
    return {
        "current": current,
        "rollback_to": rollback_to,
        "promote_from": promote_from,
        "active": list(mine.filter(status__in=_ACTIVE).order_by("created_at", "id")),
        "history": list(mine.order_by("-created_at", "-id")[:50]),
    }
