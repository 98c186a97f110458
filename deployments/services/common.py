"""Helpers shared by the services behind the Manage pages and the YAML apply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from .. import permissions
from .deployments import DeployRefused


def require_admin(user: Any) -> None:
    """Each Manage service checks this itself, so no caller can skip the rule."""
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


def stored(obj: models.Model) -> models.Model:
    """The row as saved (a new object's defaults when there is none), to diff against."""
    model = type(obj)
    return (model.objects.filter(pk=obj.pk).first() if obj.pk else None) or model()


def changed_fields(obj: models.Model, before: models.Model, *, skip: Iterable[str] = ()) -> list[str]:
    """The editable fields of `obj` whose value differs from `before`'s."""
    skipped = set(skip)
    return [
        f.name
        for f in obj._meta.concrete_fields
        if f.editable
        and not f.primary_key
        and f.name not in skipped
        and getattr(obj, f.attname) != getattr(before, f.attname)
    ]


def fixed_name(obj: Any, before: Any) -> None:
    """Names are fixed once created: container names derive from them, so a rename
    would orphan the running containers."""
    if obj.pk and obj.name != before.name:
        raise ValidationError({"name": "The name is fixed once created."})
