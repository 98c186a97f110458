from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from .models import AccessToken


def required_scope(request: Request, view: Any) -> str:
    if request.method in permissions.SAFE_METHODS:
        return "read"
    return getattr(view, "write_scope", "admin")


class HasScope(permissions.BasePermission):
    """A token reaches only what its scopes name: `read` for GETs, the view's
    `write_scope` for its writes. A browser session is not limited by scopes. Either
    way the role rules (deployments.permissions) still apply in the services."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        token = request.auth
        if isinstance(token, AccessToken):
            scope = required_scope(request, view)
            if not token.has_scope(scope):
                self.message = f"This token lacks the {scope!r} scope."
                return False
        return True
