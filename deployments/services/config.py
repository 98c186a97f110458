"""Shipmate's own configuration as YAML: export it, and apply a file (diff first, then
one transaction, idempotent, audited). Secrets travel by name only, never by value.

Apply creates and updates; it never deletes. Applications, environments, placements
and variables that are not in the file are kept and listed, so a partial file cannot
wipe an install by accident.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import yaml
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.dateparse import parse_datetime, parse_time

from ..models import Environment, FreezeWindow, Placement, PlacementVariable, Repository, Variable
from ..models.repository import APPLICATION_FIELDS
from .audit import audit
from .common import assign_changed

VERSION = 1
ENVIRONMENT_FIELDS = ("order", "target_kind", "target_settings", "smoke_url")
POLICY_FIELDS = ("requires_approval", "approvals_required", "allow_self_approval", "approval_ttl_minutes")
PLACEMENT_FIELDS = ("target_settings", "smoke_url", "public_url", "enabled")
FREEZE_FIELDS = ("kind", "reason", "weekday", "start_time", "duration_minutes", "starts_at", "ends_at")
ACTOR = "system"


class ConfigError(Exception):
    """The file cannot be applied; the message says where and why."""


class _DryRun(Exception):
    """Raised at the end of a dry run so that its transaction rolls back."""


# -- export ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return value


def _freeze(window: FreezeWindow) -> dict[str, Any]:
    return {f: _plain(getattr(window, f)) for f in FREEZE_FIELDS if getattr(window, f) not in (None, "")}


def _variables(owner: Environment | Placement) -> list[dict[str, Any]]:
    return [
        {"name": v.name, "secret": True} if v.is_secret else {"name": v.name, "value": v.plain_value}
        for v in owner.variables.order_by("name")
    ]


def config_export() -> dict[str, Any]:
    """Everything an install is configured with, secrets by name only."""
    envs = Environment.objects.prefetch_related(
        "deploy_groups", "approve_groups", "freeze_windows", "variables"
    )
    return {
        "version": VERSION,
        "applications": [
            {"name": r.name, **{f: getattr(r, f) for f in APPLICATION_FIELDS}}
            for r in Repository.objects.order_by("name")
        ],
        "environments": [
            {
                "name": e.name,
                **{f: getattr(e, f) for f in ENVIRONMENT_FIELDS},
                "kubeconfig": "set in Shipmate" if e.kubeconfig_encrypted else "",
                "policy": {
                    "deploy_groups": sorted(g.name for g in e.deploy_groups.all()),
                    "approve_groups": sorted(g.name for g in e.approve_groups.all()),
                    **{f: getattr(e, f) for f in POLICY_FIELDS},
                },
                "variables": _variables(e),
                "freeze_windows": sorted(
                    (_freeze(w) for w in e.freeze_windows.all()), key=lambda w: sorted(map(str, w.items()))
                ),
            }
            for e in envs.order_by("order", "name")
        ],
        "placements": [
            {
                "application": p.repository.name,
                "environment": p.environment.name,
                **{f: getattr(p, f) for f in PLACEMENT_FIELDS},
                "variables": _variables(p),
            }
            for p in Placement.objects.select_related("repository", "environment").order_by(
                "repository__name", "environment__order", "environment__name"
            )
        ],
    }


def config_dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


# -- apply ----------------------------------------------------------------------------------


def config_load(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConfigError(f"a configuration file is a mapping with version: {VERSION}")
    unknown = set(data) - {"version", "applications", "environments", "placements"}
    if unknown:
        raise ConfigError(f"unknown top-level keys: {', '.join(sorted(unknown))}")
    for key in ("applications", "environments", "placements"):
        if not isinstance(data.get(key, []), list):
            raise ConfigError(f"{key} must be a list")
    return data


def _entries(data: dict[str, Any], key: str, allowed: set[str]) -> list[dict[str, Any]]:
    entries = data.get(key) or []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping")
        unknown = set(entry) - allowed
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    return entries


def _save(obj: models.Model, where: str) -> None:
    try:
        obj.full_clean()
    except ValidationError as exc:
        messages = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        raise ConfigError(f"{where}: {messages}") from None
    obj.save()


def _record(lines: list[str], obj: models.Model, what: str, created: bool, changed: list[str]) -> None:
    if created:
        lines.append(f"+ {what}")
        audit(ACTOR, "config.create", obj, via="shipmate apply")
    elif changed:
        lines.append(f"~ {what}: {', '.join(changed)}")
        audit(ACTOR, "config.update", obj, via="shipmate apply", changed=changed)


def _apply_applications(data: dict[str, Any], lines: list[str]) -> dict[str, Repository]:
    found = {}
    for i, entry in enumerate(_entries(data, "applications", {"name", *APPLICATION_FIELDS})):
        repo = Repository.objects.filter(name=entry.get("name")).first()
        created = repo is None
        repo = repo or Repository(name=entry.get("name"))
        changed = assign_changed(repo, entry, APPLICATION_FIELDS)
        if created or changed:
            _save(repo, f"applications[{i}] ({repo.name})")
        _record(lines, repo, f"application {repo.name}", created, changed)
        found[repo.name] = repo
    return found


def _groups(names: Any, where: str) -> list[Group]:
    if not isinstance(names, list):
        raise ConfigError(f"{where} must be a list of group names")
    groups = list(Group.objects.filter(name__in=names))
    missing = set(names) - {g.name for g in groups}
    if missing:
        raise ConfigError(f"{where}: no such group {', '.join(sorted(missing))}")
    return groups


def _apply_policy(env: Environment, policy: Any, where: str) -> list[str]:
    if not isinstance(policy, dict):
        raise ConfigError(f"{where}.policy must be a mapping")
    changed = assign_changed(env, policy, POLICY_FIELDS)
    _save(env, where)
    for relation in ("deploy_groups", "approve_groups"):
        if relation in policy:
            wanted = _groups(policy[relation], f"{where}.policy.{relation}")
            if {g.pk for g in getattr(env, relation).all()} != {g.pk for g in wanted}:
                getattr(env, relation).set(wanted)
                changed.append(relation)
    return changed


def _apply_variables(
    owner: Environment | Placement, variables: Any, where: str, lines: list[str]
) -> list[str]:
    if not isinstance(variables, list):
        raise ConfigError(f"{where}.variables must be a list")
    changed = []
    for entry in variables:
        if not isinstance(entry, dict) or not entry.get("name") or set(entry) - {"name", "value", "secret"}:
            raise ConfigError(f"{where}.variables: each is {{name, value}} or {{name, secret: true}}")
        if entry.get("secret") and "value" in entry:
            raise ConfigError(
                f"{where}.variables.{entry['name']}: secrets are set in Shipmate, never in a file"
            )
        variable = owner.variables.filter(name=entry["name"]).first()
        secret = bool(entry.get("secret"))
        if variable is None:
            if isinstance(owner, Placement):
                variable = PlacementVariable(placement=owner, name=entry["name"], is_secret=secret)
            else:
                variable = Variable(environment=owner, name=entry["name"], is_secret=secret)
            variable.set_value("" if secret else str(entry.get("value", "")))
            _save(variable, f"{where}.variables.{entry['name']}")
            changed.append(f"+{variable.name}")
            if secret:
                lines.append(f"! secret {variable.name} in {owner} has no value yet: set it under Manage")
        elif variable.is_secret != secret or (
            not secret and variable.plain_value != str(entry.get("value", ""))
        ):
            value = variable.value if secret else str(entry.get("value", ""))
            variable.is_secret = secret
            variable.set_value(value)
            _save(variable, f"{where}.variables.{entry['name']}")
            changed.append(f"~{variable.name}")
    return changed


def _apply_freezes(env: Environment, windows: Any, where: str) -> list[str]:
    if not isinstance(windows, list):
        raise ConfigError(f"{where}.freeze_windows must be a list")
    if sorted(map(str, windows)) == sorted(str(_freeze(w)) for w in env.freeze_windows.all()):
        return []
    env.freeze_windows.all().delete()
    for entry in windows:
        if not isinstance(entry, dict) or set(entry) - set(FREEZE_FIELDS):
            raise ConfigError(f"{where}.freeze_windows: keys are {', '.join(FREEZE_FIELDS)}")
        fields = dict(entry)
        for key in ("starts_at", "ends_at"):
            if isinstance(fields.get(key), str):
                fields[key] = parse_datetime(fields[key])
        if isinstance(fields.get("start_time"), str):
            fields["start_time"] = parse_time(fields["start_time"])
        _save(FreezeWindow(environment=env, **fields), f"{where}.freeze_windows")
    return ["freeze_windows"]


def _apply_environments(data: dict[str, Any], lines: list[str]) -> dict[str, Environment]:
    allowed = {"name", *ENVIRONMENT_FIELDS, "kubeconfig", "policy", "variables", "freeze_windows"}
    found = {}
    for i, entry in enumerate(_entries(data, "environments", allowed)):
        where = f"environments[{i}] ({entry.get('name')})"
        env = Environment.objects.filter(name=entry.get("name")).first()
        created = env is None
        env = env or Environment(name=entry.get("name"))
        changed = assign_changed(env, entry, ENVIRONMENT_FIELDS)
        _save(env, where)
        changed += _apply_policy(env, entry.get("policy", {}), where)
        changed += _apply_variables(env, entry.get("variables", []), where, lines)
        changed += _apply_freezes(env, entry.get("freeze_windows", []), where)
        _record(lines, env, f"environment {env.name}", created, changed)
        found[env.name] = env
    return found


def _apply_placements(data: dict[str, Any], lines: list[str]) -> None:
    allowed = {"application", "environment", "variables", *PLACEMENT_FIELDS}
    for i, entry in enumerate(_entries(data, "placements", allowed)):
        where = f"placements[{i}] ({entry.get('application')} in {entry.get('environment')})"
        repo = Repository.objects.filter(name=entry.get("application")).first()
        env = Environment.objects.filter(name=entry.get("environment")).first()
        if repo is None or env is None:
            raise ConfigError(f"{where}: no such application or environment")
        placement = Placement.objects.filter(repository=repo, environment=env).first()
        created = placement is None
        placement = placement or Placement(repository=repo, environment=env)
        changed = assign_changed(placement, entry, PLACEMENT_FIELDS)
        if created or changed:
            _save(placement, where)
        changed += _apply_variables(placement, entry.get("variables", []), where, lines)
        _record(lines, placement, f"placement {repo.name} in {env.name}", created, changed)


def config_apply(data: dict[str, Any], *, dry_run: bool = False) -> list[str]:
    """Apply `data` (from config_load) in one transaction; return the changes, one per line.
    A dry run validates and computes the same lines, then rolls everything back."""
    lines: list[str] = []
    try:
        with transaction.atomic():
            _apply_applications(data, lines)
            names = {e.get("name") for e in data.get("environments") or []}
            _apply_environments(data, lines)
            _apply_placements(data, lines)
            kept = [f"environment {e.name}" for e in Environment.objects.exclude(name__in=names)]
            lines += [f"= {what} is not in the file; kept" for what in kept]
            if dry_run:
                raise _DryRun()
    except _DryRun:
        pass
    return lines or ["= nothing to change"]
