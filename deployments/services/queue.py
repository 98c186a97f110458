"""Publishing run messages. Builds run ahead: every queued deployment gets its build
message at once. Rollouts go one at a time per placement (application × environment),
in request order: only the first in line gets its release message, once nothing else
rolls out there."""

from __future__ import annotations

from celery import current_app
from django.db import transaction

from ..models import Deployment, Status
from ..models.deployment import RELEASABLE, WAITING
from ..selectors.runs import next_in_line, placement_busy

# Published by name, so that this module needs nothing from tasks.py (which imports the
# run lifecycle, which queues): the worker registers the task under this name.
RUN_DEPLOYMENT = "deployments.tasks.run_deployment"


def _publish(deployment_id: int) -> None:
    current_app.signature(RUN_DEPLOYMENT, args=(deployment_id,)).delay()


def dispatch_build(deployment_id: int) -> None:
    """Publish the build message of a queued deployment once the transaction commits.

    Duplicate messages are harmless: the worker's claim is a conditional update.
    """
    # Robust: a broker hiccup must not turn a committed request into an error page;
    # the reaper dispatches waiting deployments again.
    transaction.on_commit(lambda: _publish(deployment_id), robust=True)


def dispatch_next(environment_id: int, repository_id: int) -> None:
    """Publish the release message of the placement's first deployment in line, if it
    is built (or approved) and nothing rolls out there, once the transaction commits."""

    def send() -> None:
        if placement_busy(environment_id, repository_id):
            return
        head = next_in_line(environment_id, repository_id)
        if head is not None and head.status in RELEASABLE:
            _publish(head.pk)

    transaction.on_commit(send, robust=True)


def dispatch_waiting(environment_id: int | None = None, repository_id: int | None = None) -> int:
    """Publish again for every waiting deployment (of one environment or placement, when
    given): after an unlock, and from the reaper for messages a broker lost. Returns the
    number of placements with waiting deployments."""
    waiting = Deployment.objects.filter(status__in=WAITING)
    if environment_id is not None:
        waiting = waiting.filter(environment_id=environment_id)
    if repository_id is not None:
        waiting = waiting.filter(repository_id=repository_id)
    placements = set()
    for pk, status, env_id, repo_id in waiting.values_list("pk", "status", "environment_id", "repository_id"):
        if status == Status.QUEUED:
            dispatch_build(pk)
        placements.add((env_id, repo_id))
    for env_id, repo_id in placements:
        dispatch_next(env_id, repo_id)
    return len(placements)
