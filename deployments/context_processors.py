from typing import Any

from django.http import HttpRequest

from . import permissions
from .selectors import approval_inbox_count


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    if not user.is_authenticated:
        return {}
    return {
        "nav_is_admin": permissions.is_admin(user),
        "nav_audit": permissions.can_view_audit(user),
        "nav_approvals": approval_inbox_count(user),
    }
