"""The dashboard matrix (applications × environments) and the placement page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Min
from django.urls import reverse

from .. import permissions
from ..models import Deployment, Environment, Placement, Repository, Status
from ..models.deployment import WAITING
from .pages import _ACTIVE, _base, visible_environments, with_current
from .runs import last_successful, rollback_candidate

WEBHOOK_DELIVERIES_SHOWN = 20


@dataclass
class Cell:
    """One application in one environment on the dashboard."""

    placement: Placement
    current: Deployment | None  # what runs there now, as Shipmate deployed it
    running: Deployment | None
    queued: int  # waiting or awaiting approval
    behind: str = ""  # the environment to the left that runs newer code, if any
    can_deploy: bool = False
    url: str = ""  # the placement page
    deploy_url: str = ""  # the Deploy form, with this application and environment chosen


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
    placements = with_current(
        Placement.objects.filter(environment_id__in=ids, enabled=True).select_related(
            "repository", "environment"
        )
    )
    runs_now = [p.current for p in placements if p.current]  # type: ignore[attr-defined]
    queued = {
        (row["environment_id"], row["repository_id"]): row["n"]
        for row in Deployment.objects.filter(
            environment_id__in=ids, status__in=[*WAITING, Status.AWAITING_APPROVAL]
        )
        .values("environment_id", "repository_id")
        .annotate(n=Count("id"))
    }
    running: dict[tuple[int, int], Deployment] = {}
    # A rollout shows before a build running ahead of its turn.
    for d in Deployment.objects.filter(environment_id__in=ids, status=Status.RUNNING).order_by("-phase"):
        running.setdefault((d.environment_id, d.repository_id), d)
    # When each running commit first appeared: code that appeared later is newer.
    commits = {d.commit_sha for d in runs_now if d.commit_sha}
    first_seen = {
        (row["repository_id"], row["commit_sha"]): row["first"]
        for row in Deployment.objects.filter(
            repository_id__in={d.repository_id for d in runs_now}, commit_sha__in=commits
        )
        .values("repository_id", "commit_sha")
        .annotate(first=Min("created_at"))
    }
    deployable = {env.pk: permissions.can_deploy(user, env) for env in envs}
    column = {env.pk: i for i, env in enumerate(envs)}
    rows: dict[int, MatrixRow] = {}
    # Reversed once: 50 × 10 cells would otherwise resolve two URLs each.
    head, rest = reverse("placement_detail", args=["__app__", "__env__"]).split("__app__")
    middle, tail = rest.split("__env__")
    deploy = reverse("deploy")
    for p in sorted(placements, key=lambda p: p.repository.name):
        row = rows.setdefault(p.repository_id, MatrixRow(p.repository, [None] * len(envs)))
        key = (p.environment_id, p.repository_id)
        row.cells[column[p.environment_id]] = Cell(
            placement=p,
            current=p.current,  # type: ignore[attr-defined]
            running=running.get(key),
            queued=queued.get(key, 0),
            can_deploy=deployable[p.environment_id],
            url=f"{head}{p.repository.name}{middle}{p.environment.name}{tail}",
            deploy_url=f"{deploy}?repository={p.repository_id}&environment={p.environment_id}",
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


def placement_overview(user: Any, placement: Placement) -> dict[str, Any]:
    """The placement page: its queue, history, and what a rollback or a promotion would ship."""
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
        **_webhook(placement),
    }


def _webhook(placement: Placement) -> dict[str, Any]:
    from ..webhooks.models import Provider, WebhookConfig, WebhookDelivery

    deliveries = WebhookDelivery.objects.filter(placement=placement).select_related("deployment")
    return {
        "webhook": WebhookConfig.objects.filter(placement=placement).first(),
        "webhook_deliveries": list(deliveries[:WEBHOOK_DELIVERIES_SHOWN]),
        "webhook_providers": Provider.values,
    }
