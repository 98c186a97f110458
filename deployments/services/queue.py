"""One active run per placement (application × environment); the rest wait in FIFO order."""

from __future__ import annotations

from celery import current_app
from django.db import transaction

from ..selectors.runs import next_waiting, placement_busy

# Published by name, so that this module needs nothing from tasks.py (which imports the
# run lifecycle, which queues): the worker registers the task under this name.
RUN_DEPLOYMENT = "deployments.tasks.run_deployment"


def dispatch_next(environment_id: int, repository_id: int) -> None:
    """Publish a task for the placement's first waiting deployment once the transaction commits.

    Duplicate messages are harmless: the worker's claim is a conditional update.
    """

    def send() -> None:
        if placement_busy(environment_id, repository_id):
            return
        head = next_waiting(environment_id, repository_id)
        if head is not None:
            current_app.signature(RUN_DEPLOYMENT, args=(head.pk,)).delay()

    # Robust: a broker hiccup must not turn a committed request into an error page;
    # the reaper dispatches waiting heads again.
    transaction.on_commit(send, robust=True)
