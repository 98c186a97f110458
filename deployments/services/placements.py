"""Writing placements: one application in one environment."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import Placement
from .audit import audit
from .common import require_admin


@transaction.atomic
def placement_save(*, user: Any, placement: Placement, source_ip: str | None = None) -> Placement:
    """Create or update a placement. Its clean() parses the settings as the worker will
    and refuses a port or Deployment another placement uses."""
    require_admin(user)
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
