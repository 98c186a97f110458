"""Thin Celery tasks: take an id, let `execution` claim and run, own the retries."""

from __future__ import annotations

import socket

from celery import shared_task

from . import execution
from .services import runs


@shared_task(name="deployments.tasks.run_deployment", acks_late=True, reject_on_worker_lost=True)
def run_deployment(deployment_id: int) -> str:
    worker = f"{socket.gethostname()}:{run_deployment.request.hostname or '-'}"
    return execution.execute(int(deployment_id), worker=worker)


@shared_task(name="deployments.tasks.reap")
def reap() -> dict[str, int]:
    return runs.reap()
