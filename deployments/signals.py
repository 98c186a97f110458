from typing import Any

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .services.audit import audit


@receiver(user_login_failed)
def audit_login_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    # Only the user name: the password never reaches the audit trail.
    audit(
        "anonymous",
        "auth.login_failed",
        object_type="user",
        object_repr=str(credentials.get("username", ""))[:150],
        source_ip=request.META.get("REMOTE_ADDR") if request is not None else None,
    )
