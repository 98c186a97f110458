"""Thin Celery tasks: take an id, let `execution` claim and run, own the retries."""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import shared_task
from celery.signals import worker_init, worker_shutting_down
from django.db import connection

from . import execution
from .services import lifecycle
from .services.queue import RUN_DEPLOYMENT

logger = logging.getLogger(__name__)


def worker_name(node: str | None) -> str:
    """How a deployment records the worker that claimed it."""
    return f"{socket.gethostname()}:{node or '-'}"


@shared_task(name=RUN_DEPLOYMENT, acks_late=True, reject_on_worker_lost=True)
def run_deployment(deployment_id: int) -> str:
    return execution.execute(int(deployment_id), worker=worker_name(run_deployment.request.hostname))


@shared_task(name="deployments.tasks.reap")
def reap() -> dict[str, int]:
    return lifecycle.reap()


@worker_shutting_down.connect
def cancel_runs_on_shutdown(sender: str, **kwargs: Any) -> None:
    """A stopping worker (SIGTERM, Ctrl-C) cancels its runs, so that its warm shutdown
    ends within seconds with a readable reason instead of waiting out a test stage."""
    try:
        stopped = lifecycle.deployments_interrupt(worker=worker_name(sender))
        if stopped:
            logger.warning("worker %s is stopping: cancelling %d running deployment(s)", sender, stopped)
    except Exception:  # the shutdown must go on even if the database is gone
        logger.exception("could not cancel the running deployments of %s", sender)
    finally:
        connection.close()


@worker_init.connect
def settle_runs_of_a_previous_life(sender: Any, **kwargs: Any) -> None:
    """Runs still recorded as this worker's were cut off when it last stopped (killed,
    or a second Ctrl-C): no process of this name runs them now, so settle them before
    consuming anything."""
    try:
        settled = lifecycle.deployments_settle_stopped(worker=worker_name(sender.hostname))
        if settled:
            logger.warning("settled %d deployment(s) cut off when %s last stopped", settled, sender.hostname)
    except Exception:  # a worker that cannot reach the database fails later, with a clearer error
        logger.exception("could not settle the deployments %s left behind", sender.hostname)
    finally:
        connection.close()  # not inherited by the pool's forked processes
