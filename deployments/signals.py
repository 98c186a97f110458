from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_save
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


_ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """Every add, change and delete in the Django admin, in the admin's own transaction:
    the admin writes a LogEntry for each, so one receiver covers every model (users and
    their groups included). The message names the changed fields, never their values."""
    if not created:
        return
    audit(
        instance.user,
        _ADMIN_ACTIONS.get(instance.action_flag, "admin.change"),
        object_type=instance.content_type.model if instance.content_type else "",
        object_repr=instance.object_repr[:200],
        object_id=instance.object_id or "",
        via="admin",
        change=instance.get_change_message(),
    )
