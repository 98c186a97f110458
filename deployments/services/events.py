"""What the services announce, inside the transaction that made the change, to the apps
that plug into them (notifications): the services import nothing of those apps.

Receivers run in the sender's transaction and must not raise: a notification must never
block or fail a deployment."""

from django.dispatch import Signal

# deployment, event ("requested", or the status the run moved to), actor (a user or "system")
deployment_event = Signal()
# environment, placement (None for an environment lock), actor
lock_changed = Signal()
