"""Writing an environment's configuration (target, policy, kubeconfig) and checking
its connection. Locks live in services/environments.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from ..models import Environment, Repository
from ..pipeline.base import StageError, Target, TargetError
from .audit import audit
from .common import changed_fields, fixed_name, require_admin, stored

# The connection check answers a person waiting on a page: fail fast on a dead engine.
CHECK_TIMEOUT = 10


@transaction.atomic
def environment_save(
    *,
    user: Any,
    environment: Environment,
    deploy_groups: Iterable[Group] | None = None,
    approve_groups: Iterable[Group] | None = None,
    kubeconfig: str = "",
    clear_kubeconfig: bool = False,
    source_ip: str | None = None,
) -> Environment:
    """Create (no pk yet) or update `environment`, which carries the new values. Groups
    given replace the policy's (None keeps them); the kubeconfig is write-only: blank
    keeps the stored one, `clear_kubeconfig` removes it. The name is fixed once created.
    The audit event names what changed, never the kubeconfig's content."""
    require_admin(user)
    creating = environment.pk is None
    before = stored(environment)
    fixed_name(environment, before)
    changed = changed_fields(environment, before, skip=["target_settings"])
    old, new = before.target_settings or {}, environment.target_settings or {}
    changed += sorted(f"target_settings.{k}" for k in set(old) | set(new) if old.get(k) != new.get(k))
    text = (kubeconfig or "").strip()
    if text and clear_kubeconfig:
        raise ValidationError({"kubeconfig": "Paste a new kubeconfig or clear the stored one, not both."})
    if text:
        environment.set_kubeconfig(text)
        changed.append("kubeconfig replaced")
    elif clear_kubeconfig and environment.kubeconfig_encrypted:
        environment.set_kubeconfig("")
        changed.append("kubeconfig cleared")
    environment.full_clean()
    environment.save()
    for field, groups in (("deploy_groups", deploy_groups), ("approve_groups", approve_groups)):
        if groups is None:
            continue
        wanted = {g.pk for g in groups}
        if creating or wanted != set(getattr(environment, field).values_list("pk", flat=True)):
            getattr(environment, field).set(wanted)
            changed.append(field)
    if creating:
        audit(user, "environment.create", environment, source_ip=source_ip, fields=changed)
    elif changed:
        audit(user, "environment.update", environment, source_ip=source_ip, changed=changed)
    return environment


def _probe_name(environment: Environment) -> str:
    # Containers are named per repository; look for the one deployed last, if any.
    latest = environment.deployments.select_related("repository").order_by("-created_at").first()
    repository = latest.repository if latest else Repository.objects.order_by("name").first()
    return f"shipmate-{repository.name}-{environment.name}" if repository else f"shipmate-{environment.name}"


def _build_probe(environment: Environment) -> Target:
    from ..pipeline.docker_client import connect
    from ..pipeline.targets import build_target
    from ..pipeline.targets.settings import DockerSettings, parse_settings

    settings = parse_settings(environment.target_kind, environment.target_settings)
    extra: dict[str, Any] = {"kubeconfig": environment.kubeconfig}
    if isinstance(settings, DockerSettings):
        extra["client"] = connect(settings.docker_host or None, timeout=CHECK_TIMEOUT)
    return build_target(environment.target_kind, name=_probe_name(environment), settings=settings, **extra)


def environment_test_connection(
    *, user: Any, environment: Environment, source_ip: str | None = None
) -> tuple[bool, str]:
    """Reach the environment's target and describe it. Not atomic on purpose: no
    transaction stays open while a remote engine or cluster answers."""
    require_admin(user)
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
