"""Writing repositories (the applications Shipmate builds)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..models import Repository
from .audit import audit
from .common import changed_fields, fixed_name, require_admin, stored


@transaction.atomic
def repository_save(*, user: Any, repository: Repository, source_ip: str | None = None) -> Repository:
    """Create (no pk yet) or update `repository`, which carries the new values. The
    name is fixed once created."""
    require_admin(user)
    creating = repository.pk is None
    before = stored(repository)
    fixed_name(repository, before)
    changed = changed_fields(repository, before)
    repository.full_clean()
    repository.save()
    if creating:
        audit(user, "repository.create", repository, source_ip=source_ip)
    elif changed:
        audit(user, "repository.update", repository, source_ip=source_ip, changed=changed)
    return repository
