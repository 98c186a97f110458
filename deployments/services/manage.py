"""Writes behind the in-app admin pages ("Manage"): repositories, environments, their
variables and freeze windows, users' roles, and the target connection check.

Each service checks `permissions.can_manage` itself, so no caller can skip the rule,
and raises `ValidationError` (keyed by form field) for bad input, so the page can
show the message next to the field. Audit details name what changed and never carry
a secret value or kubeconfig content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, time
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from .. import permissions
from ..models import Environment, FreezeWindow, Placement, PlacementVariable, Repository, Variable
from ..pipeline.base import StageError, Target, TargetError
from .audit import audit
from .deployments import DeployRefused

REPOSITORY_FIELDS = (
    "name",
    "git_url",
    "default_branch",
    "dockerfile_path",
    "build_context",
    "test_command",
    "image_name",
    "dockerfile_repo_url",
    "dockerfile_repo_ref",
)
ENVIRONMENT_FIELDS = (
    "name",
    "order",
    "target_kind",
    "smoke_url",
    "requires_approval",
    "approvals_required",
    "allow_self_approval",
    "approval_ttl_minutes",
)
POLICY_GROUPS = ("deploy_groups", "approve_groups")
TARGET_KEYS: dict[str, tuple[str, ...]] = {
    "docker": (
        "docker_host",
        "port",
        "container_port",
        "network_mode",
        "bind_host",
        "health_path",
        "health_timeout",
    ),
    "kubernetes": (
        "namespace",
        "deployment",
        "container",
        "context",
        "kubeconfig_path",
        "in_cluster",
        "timeout",
        "max_restarts",
    ),
}
KNOWN_TARGET_KEYS = frozenset(k for keys in TARGET_KEYS.values() for k in keys)
VARIABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The connection check answers a person waiting on a page: fail fast on a dead engine.
CHECK_TIMEOUT = 10


def _require_admin(user: Any) -> None:
    if not permissions.can_manage(user):
        raise DeployRefused("Only admins may change Shipmate's configuration.")


def assign_changed(obj: Any, data: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """Copy `fields` present in `data` onto `obj`; return the names whose value changed."""
    changed = []
    for field in fields:
        if field in data and getattr(obj, field) != data[field]:
            setattr(obj, field, data[field])
            changed.append(field)
    return changed


@transaction.atomic
def repository_save(
    *, user: Any, repository: Repository | None, data: Mapping[str, Any], source_ip: str | None = None
) -> Repository:
    """Create (repository=None) or update. The name is fixed once created: container
    names derive from it, so a rename would orphan the running containers."""
    _require_admin(user)
    creating = repository is None
    repo = Repository() if creating else repository
    fields = REPOSITORY_FIELDS if creating else tuple(f for f in REPOSITORY_FIELDS if f != "name")
    changed = assign_changed(repo, data, fields)
    repo.full_clean()
    repo.save()
    if creating:
        audit(user, "repository.create", repo, source_ip=source_ip)
    elif changed:
        audit(user, "repository.update", repo, source_ip=source_ip, changed=changed)
    return repo


def _target_settings(kind: str, old: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    # Keys the form does not know (set through the Django admin, say) survive an edit.
    merged = {k: v for k, v in old.items() if k not in KNOWN_TARGET_KEYS}
    for key in TARGET_KEYS.get(kind, ()):
        value = given.get(key)
        if value not in (None, "", False):
            merged[key] = value
    # What each application needs (a port, a Deployment) may come from its placement:
    # Placement.clean() checks the combination.
    return merged


@transaction.atomic
def environment_save(
    *, user: Any, environment: Environment | None, data: Mapping[str, Any], source_ip: str | None = None
) -> Environment:
    """Create (environment=None) or update from form data: model fields, the target
    settings as separate keys, `deploy_groups`/`approve_groups`, and a write-only
    kubeconfig (`kubeconfig`: blank keeps it; `clear_kubeconfig`: removes it).
    The name is fixed once created, for the same reason as a repository's."""
    _require_admin(user)
    creating = environment is None
    env = Environment() if creating else environment
    fields = ENVIRONMENT_FIELDS if creating else tuple(f for f in ENVIRONMENT_FIELDS if f != "name")
    changed = assign_changed(env, data, fields)
    settings = _target_settings(env.target_kind, env.target_settings or {}, data)
    old_settings = env.target_settings or {}
    changed += sorted(
        f"target_settings.{k}"
        for k in set(old_settings) | set(settings)
        if old_settings.get(k) != settings.get(k)
    )
    env.target_settings = settings
    changed += _apply_kubeconfig(env, data)
    env.full_clean()
    env.save()
    for field in POLICY_GROUPS:
        if field in data:
            wanted = {g.pk for g in data[field]}
            if creating or wanted != set(getattr(env, field).values_list("pk", flat=True)):
                getattr(env, field).set(wanted)
                changed.append(field)
    if creating:
        audit(user, "environment.create", env, source_ip=source_ip, fields=changed)
    elif changed:
        audit(user, "environment.update", env, source_ip=source_ip, changed=changed)
    return env


def _apply_kubeconfig(env: Environment, data: Mapping[str, Any]) -> list[str]:
    text = (data.get("kubeconfig") or "").strip()
    if text and data.get("clear_kubeconfig"):
        raise ValidationError({"kubeconfig": "Paste a new kubeconfig or clear the stored one, not both."})
    if text:
        env.set_kubeconfig(text)
        return ["kubeconfig replaced"]
    if data.get("clear_kubeconfig") and env.kubeconfig_encrypted:
        env.set_kubeconfig("")
        return ["kubeconfig cleared"]
    return []


@transaction.atomic
def variable_set(
    *,
    user: Any,
    environment: Environment | Placement,
    name: str,
    value: str,
    is_secret: bool,
    source_ip: str | None = None,
) -> Variable | PlacementVariable:
    """Create or replace a variable of an environment (shared by its applications) or
    of a placement (that application's own, overriding the environment's). A secret is
    write-only: a blank value for an existing secret keeps the stored one, and a secret
    turns plain only with a new value (otherwise the page would show it)."""
    _require_admin(user)
    if not VARIABLE_NAME_RE.match(name) or len(name) > 100:
        raise ValidationError({"name": "Use letters, digits and underscores, not starting with a digit."})
    model, owner = _variable_model(environment)
    variable = model.objects.select_for_update().filter(**owner, name=name).first()
    created = variable is None
    if created:
        variable = model(**owner, name=name)
    keep = not value and not created and variable.is_secret
    if keep and not is_secret:
        raise ValidationError({"value": "Give a new value to turn a secret into a plain variable."})
    if is_secret and not value and not keep:
        raise ValidationError({"value": "A secret needs a value."})
    value_changed = not keep and (created or value != variable.value)
    current = variable.value if keep else value
    variable.is_secret = is_secret
    variable.set_value(current)
    variable.full_clean(exclude=list(owner))
    variable.save()
    audit(
        user,
        "variable.set",
        environment,
        source_ip=source_ip,
        object_repr=f"{environment}: {name}",
        variable=name,
        is_secret=is_secret,
        created=created,
        value_changed=value_changed,
    )
    return variable


def _variable_model(owner: Environment | Placement) -> tuple[Any, dict[str, Any]]:
    if isinstance(owner, Placement):
        return PlacementVariable, {"placement": owner}
    return Variable, {"environment": owner}


@transaction.atomic
def variable_delete(
    *, user: Any, variable: Variable | PlacementVariable, source_ip: str | None = None
) -> None:
    _require_admin(user)
    env = variable.placement if isinstance(variable, PlacementVariable) else variable.environment
    audit(
        user,
        "variable.delete",
        env,
        source_ip=source_ip,
        object_repr=f"{env}: {variable.name}",
        variable=variable.name,
        is_secret=variable.is_secret,
    )
    variable.delete()


@transaction.atomic
def freeze_create(
    *,
    user: Any,
    environment: Environment,
    kind: str,
    reason: str,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    weekday: int | None = None,
    start_time: time | None = None,
    duration_minutes: int | None = None,
    source_ip: str | None = None,
) -> FreezeWindow:
    _require_admin(user)
    window = FreezeWindow(environment=environment, kind=kind, reason=(reason or "").strip())
    errors: dict[str, str] = {}
    if not window.reason:
        errors["reason"] = "A freeze window needs a reason."
    if kind == FreezeWindow.Kind.ONCE:
        window.starts_at, window.ends_at = starts_at, ends_at
        if not starts_at:
            errors["starts_at"] = "Required for a one-off window."
        if not ends_at:
            errors["ends_at"] = "Required for a one-off window."
        elif starts_at and ends_at <= starts_at:
            errors["ends_at"] = "Must be after the start."
    elif kind == FreezeWindow.Kind.WEEKLY:
        window.weekday, window.start_time, window.duration_minutes = weekday, start_time, duration_minutes
        if weekday is None or not 0 <= weekday <= 6:
            errors["weekday"] = "Pick a day of the week."
        if start_time is None:
            errors["start_time"] = "Required for a weekly window."
        if not duration_minutes or duration_minutes <= 0:
            errors["duration_minutes"] = "Must be more than zero minutes."
    else:
        errors["kind"] = "Unknown kind of window."
    if errors:
        raise ValidationError(errors)
    window.full_clean()
    window.save()
    audit(
        user,
        "freeze.create",
        environment,
        source_ip=source_ip,
        object_repr=str(window),
        window=window.pk,
        kind=kind,
        reason=window.reason,
    )
    return window


@transaction.atomic
def freeze_delete(*, user: Any, window: FreezeWindow, source_ip: str | None = None) -> None:
    _require_admin(user)
    audit(
        user,
        "freeze.delete",
        window.environment,
        source_ip=source_ip,
        object_repr=str(window),
        window=window.pk,
        kind=window.kind,
        reason=window.reason,
    )
    window.delete()


@transaction.atomic
def user_set_roles(
    *, user: Any, target_user: Any, groups: Iterable[str], source_ip: str | None = None
) -> list[str]:
    """Set which of the role groups `target_user` is in; other groups are left alone.
    Returns the roles held afterwards."""
    _require_admin(user)
    wanted = set(groups)
    unknown = wanted - set(permissions.ROLE_GROUPS)
    if unknown:
        raise ValidationError({"groups": f"Unknown role: {', '.join(sorted(unknown))}."})
    current = set(target_user.groups.filter(name__in=permissions.ROLE_GROUPS).values_list("name", flat=True))
    if target_user.pk == user.pk and permissions.ADMINS in current and permissions.ADMINS not in wanted:
        raise DeployRefused("You cannot remove your own Admins role; ask another admin.")
    added, removed = sorted(wanted - current), sorted(current - wanted)
    target_user.groups.add(*[Group.objects.get_or_create(name=n)[0] for n in added])
    target_user.groups.remove(*Group.objects.filter(name__in=removed))
    for cache in ("_shipmate_group_ids", "_shipmate_group_names"):
        target_user.__dict__.pop(cache, None)
    if added or removed:
        audit(
            user,
            "user.roles",
            target_user,
            source_ip=source_ip,
            object_type="user",
            object_repr=target_user.get_username(),
            added=added,
            removed=removed,
            roles=sorted(wanted),
        )
    return sorted(wanted)


def _probe_name(environment: Environment) -> str:
    # Containers are named per repository; look for the one deployed last, if any.
    latest = environment.deployments.select_related("repository").order_by("-created_at").first()
    repository = latest.repository if latest else Repository.objects.order_by("name").first()
    return f"shipmate-{repository.name}-{environment.name}" if repository else f"shipmate-{environment.name}"


def _build_probe(environment: Environment) -> Target:
    from ..pipeline.docker_client import connect
    from ..pipeline.targets import build_target

    extra: dict[str, Any] = {"kubeconfig": environment.kubeconfig}
    if environment.target_kind == "docker":
        extra["client"] = connect(
            environment.target_settings.get("docker_host") or None, timeout=CHECK_TIMEOUT
        )
    return build_target(
        environment.target_kind, name=_probe_name(environment), settings=environment.target_settings, **extra
    )


def environment_test_connection(
    *, user: Any, environment: Environment, source_ip: str | None = None
) -> tuple[bool, str]:
    """Reach the environment's target and describe it. Not atomic on purpose: no
    transaction stays open while a remote engine or cluster answers."""
    _require_admin(user)
    target = None
    try:
        target = _build_probe(environment)
        ok, message = True, target.check()
    except (TargetError, StageError) as exc:
        ok, message = False, str(exc)
    except Exception as exc:  # a broken setting must show up as a failed check, not a 500
        ok, message = False, f"{type(exc).__name__}: {exc}"
    finally:
        if target is not None:
            target.close()
    audit(user, "environment.test_connection", environment, source_ip=source_ip, ok=ok)
    return ok, message


@transaction.atomic
def placement_save(*, user: Any, placement: Placement, source_ip: str | None = None) -> Placement:
    """Create or update a placement (validated by its clean(): no shared port or Deployment)."""
    _require_admin(user)
    creating = placement.pk is None
    placement.full_clean()
    placement.save()
    audit(
        user,
        "placement.create" if creating else "placement.update",
        placement,
        source_ip=source_ip,
        repository=placement.repository.name,
        environment=placement.environment.name,
        target_settings=placement.target_settings,
        enabled=placement.enabled,
    )
    return placement
