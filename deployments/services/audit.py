from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models

from ..models import AuditEvent

# Details every audit event written in this context carries, such as via="api": the
# API calls the same services as the pages, and the trail should say which one asked.
_context: ContextVar[dict[str, Any] | None] = ContextVar("audit_context", default=None)


@contextmanager
def audit_context(**details: Any) -> Iterator[None]:
    token = _context.set({**(_context.get() or {}), **details})
    try:
        yield
    finally:
        _context.reset(token)


def audit(
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    *,
    source_ip: str | None = None,
    commit_sha: str = "",
    image_digest: str = "",
    object_type: str = "",
    object_repr: str = "",
    object_id: str = "",
    **details: Any,
) -> AuditEvent:
    """Append one audit event. Call it inside the service's transaction."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_repr = object_repr or str(obj)[:200]
    return AuditEvent.objects.create(
        actor=user,
        actor_name=user.get_username() if user else (actor if isinstance(actor, str) else "system"),
        action=action,
        object_type=object_type,
        object_id=str(obj.pk) if obj is not None else object_id,
        object_repr=object_repr,
        commit_sha=commit_sha or getattr(obj, "commit_sha", "") or "",
        image_digest=image_digest or getattr(obj, "image_digest", "") or "",
        details={**(_context.get() or {}), **details},
        source_ip=source_ip,
    )
