"""Writing users' roles (the role groups of permissions.ROLE_GROUPS)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction

from .. import permissions
from .audit import audit
from .common import require_admin
from .deployments import DeployRefused


@transaction.atomic
def user_set_roles(
    *, user: Any, target_user: Any, groups: Iterable[str], source_ip: str | None = None
) -> list[str]:
    """Set which of the role groups `target_user` is in; other groups are left alone.
    Returns the roles held afterwards."""
    require_admin(user)
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
