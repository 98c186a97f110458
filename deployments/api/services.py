"""Token writes: atomic, audited in the same transaction."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from deployments.services import DeployRefused, audit

from .models import SCOPES, TOKEN_PREFIX, AccessToken, hash_secret


@transaction.atomic
def access_token_create(
    *,
    user: Any,
    name: str,
    scopes: Iterable[str],
    expires_at: datetime | None,
    source_ip: str | None = None,
) -> tuple[AccessToken, str]:
    """The new token and its secret, which is never stored and cannot be shown again."""
    chosen = [s for s in SCOPES if s in set(scopes)]
    if not chosen:
        raise DeployRefused("Choose at least one scope.")
    if not name.strip():
        raise DeployRefused("A token needs a name.")
    if expires_at is not None and expires_at <= timezone.now():
        raise DeployRefused("The expiry must be in the future.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AccessToken.objects.create(
        user=user,
        name=name.strip(),
        prefix=secret[:12],
        token_hash=hash_secret(secret),
        scopes=chosen,
        expires_at=expires_at,
    )
    audit(
        user,
        "token.create",
        token,
        source_ip=source_ip,
        scopes=chosen,
        expires_at=expires_at.isoformat() if expires_at else "",
    )
    return token, secret


@transaction.atomic
def access_token_revoke(*, user: Any, token: AccessToken, source_ip: str | None = None) -> AccessToken:
    token = AccessToken.objects.select_for_update().get(pk=token.pk)
    if token.user_id != user.pk:
        raise DeployRefused("You may revoke only your own tokens.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit(user, "token.revoke", token, source_ip=source_ip)
    return token
