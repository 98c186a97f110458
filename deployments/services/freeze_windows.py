"""Writing freeze windows: times when nothing deploys to an environment."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import FreezeWindow
from .audit import audit
from .common import require_admin


@transaction.atomic
def freeze_create(*, user: Any, window: FreezeWindow, source_ip: str | None = None) -> FreezeWindow:
    """Save a new window of `window.environment`; FreezeWindow.clean() has the rules."""
    require_admin(user)
    window.full_clean()
    window.save()
    audit(
        user,
        "freeze.create",
        window.environment,
        source_ip=source_ip,
        object_repr=str(window),
        window=window.pk,
        kind=window.kind,
        reason=window.reason,
    )
    return window


@transaction.atomic
def freeze_delete(*, user: Any, window: FreezeWindow, source_ip: str | None = None) -> None:
    require_admin(user)
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
