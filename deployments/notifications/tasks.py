"""Thin Celery task: one attempt per message, on the `notifications` queue; the retry
is a new message with a countdown, so no worker sleeps through a backoff."""

from __future__ import annotations

from celery import shared_task

from . import services
from .hooks import DELIVER, publish


@shared_task(name=DELIVER, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(delivery_id: int) -> None:
    retry_in = services.delivery_attempt(delivery_id=int(delivery_id))
    if retry_in is not None:
        publish(int(delivery_id), countdown=retry_in)


@shared_task(name="deployments.notifications.tasks.redispatch", ignore_result=True)
def redispatch() -> int:
    return services.deliveries_redispatch()
