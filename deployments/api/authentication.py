from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import TOKEN_PREFIX, AccessToken, hash_secret

KEYWORD = "Bearer"
# last_used_at is written at most this often per token, not on every request.
_TOUCH_EVERY = timedelta(minutes=1)


def bearer_token(header: str) -> AccessToken | None:
    """The active token an `Authorization` header carries, or None when the header is not
    a bearer one. An unknown, revoked or expired token, or one whose user is inactive,
    raises AuthenticationFailed. Shared by the DRF views and the async event stream."""
    parts = header.split()
    if not parts or parts[0].lower() != KEYWORD.lower():
        return None
    if len(parts) != 2 or not parts[1].startswith(TOKEN_PREFIX):
        raise exceptions.AuthenticationFailed("Expected `Authorization: Bearer shp_…`.")
    token = AccessToken.objects.select_related("user").filter(token_hash=hash_secret(parts[1])).first()
    if token is None:
        raise exceptions.AuthenticationFailed("Unknown token.")
    if token.revoked_at is not None:
        raise exceptions.AuthenticationFailed("This token was revoked.")
    if token.is_expired:
        raise exceptions.AuthenticationFailed("This token has expired.")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("The token's user is inactive.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class TokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer shp_…`. DRF exempts requests it authenticates from CSRF
    (only SessionAuthentication enforces it): a token is not sent by browsers on
    their own, so a forged cross-site request cannot carry one."""

    keyword = KEYWORD

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        token = bearer_token(authentication.get_authorization_header(request).decode("latin-1"))
        return None if token is None else (token.user, token)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword  # makes DRF answer 401, not 403, when no credentials came
