"""Who may do what. One helper per object kind; views, the SSE stream, services
and the worker all ask here, so a rule lives in one place."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from .models import Deployment, Environment

DEVELOPERS = "Developers"
RELEASE_MANAGERS = "Release managers"
ADMINS = "Admins"
ROLE_GROUPS = (DEVELOPERS, RELEASE_MANAGERS, ADMINS)


def _group_ids(user: Any) -> set[int]:
    # Cached on the user object: one query per request, not one per check.
    cached = getattr(user, "_shipmate_group_ids", None)
    if cached is None:
        cached = set(user.groups.values_list("id", flat=True)) if user.is_authenticated else set()
        user._shipmate_group_ids = cached
    return cached


def _group_names(user: Any) -> set[str]:
    cached = getattr(user, "_shipmate_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
        user._shipmate_group_names = cached
    return cached


def is_admin(user: Any) -> bool:
    return bool(
        user.is_authenticated and user.is_active and (user.is_superuser or ADMINS in _group_names(user))
    )


def is_release_manager(user: Any) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return is_admin(user) or RELEASE_MANAGERS in _group_names(user)


def _in(user: Any, groups: Any) -> bool:
    return bool(_group_ids(user) & {g.pk for g in groups.all()})


def can_deploy(user: Any, environment: Environment) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return is_admin(user) or _in(user, environment.deploy_groups)


def can_approve_environment(user: Any, environment: Environment) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return is_admin(user) or _in(user, environment.approve_groups)


def can_view_environment(user: Any, environment: Environment) -> bool:
    return can_deploy(user, environment) or can_approve_environment(user, environment)


def can_view_deployment(user: Any, deployment: Deployment) -> bool:
    if not (user.is_authenticated and user.is_active):
        return False
    return deployment.requested_by_id == user.pk or can_view_environment(user, deployment.environment)


def approvable(user: Any) -> Q:
    """`can_approve` as a filter on deployments, for counting in the database."""
    if not (user.is_authenticated and user.is_active):
        return Q(pk__in=[])
    own_blocked = Q(requested_by_id=user.pk, environment__allow_self_approval=False)
    if is_admin(user):
        return ~own_blocked
    return Q(environment__approve_groups__in=_group_ids(user)) & ~own_blocked


def can_approve(user: Any, deployment: Deployment) -> bool:
    env = deployment.environment
    if not can_approve_environment(user, env):
        return False
    return env.allow_self_approval or deployment.requested_by_id != user.pk


def can_cancel(user: Any, deployment: Deployment) -> bool:
    if deployment.is_finished:
        return False
    own = deployment.requested_by_id == user.pk and can_deploy(user, deployment.environment)
    return own or can_approve_environment(user, deployment.environment)


def can_lock(user: Any, environment: Environment) -> bool:
    return is_admin(user) or (is_release_manager(user) and can_approve_environment(user, environment))


def can_manage(user: Any) -> bool:
    return is_admin(user)


def can_view_audit(user: Any) -> bool:
    return is_release_manager(user)
