"""The database goes away for a few seconds in the middle of a run (PostgreSQL behind a
TCP proxy that a test can pause): the run fails with a sentence, its outcome is written
once the database is back, and nothing is left running."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection, connections

from deployments import services
from deployments.execution import execute
from deployments.models import Deployment, Stage, Status
from tests.faults.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker_database() -> Any:
    """New connections (the worker's thread) go through a proxy; this thread's stays direct."""
    connection.ensure_connection()
    db = connections.settings["default"]
    proxy = TcpProxy(int(db.get("PORT") or 5432))
    saved = dict(db)
    db.update(HOST="127.0.0.1", PORT=str(proxy.port))
    try:
        yield proxy
    finally:
        db.clear()
        db.update(saved)
        proxy.close()


def wait_stage(deployment: Deployment, name: str, status: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not Stage.objects.filter(deployment=deployment, name=name, status=status).exists():
        assert time.monotonic() < deadline, f"stage {name} never became {status}"
        time.sleep(0.05)


def test_a_database_outage_during_a_run_fails_it_clearly_and_leaves_no_orphan(
    high_ids, private_queue, worker_database, dev, repository, dev_env, docker_engine
):
    repository.test_command = "sh -c 'echo slow tests; sleep 2; echo done'"
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    outcome: list[str] = []

    def worker() -> None:
        try:
            outcome.append(execute(deployment.pk, worker="outage-test"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=worker)
    thread.start()
    wait_stage(deployment, "test", "running")
    worker_database.pause()  # the test stage ends while the database is away
    time.sleep(4)
    worker_database.resume()
    thread.join(60)
    assert not thread.is_alive(), "the worker never came back from the outage"

    deployment.refresh_from_db()
    assert outcome == [Status.FAILED]
    assert deployment.status == Status.FAILED
    assert deployment.error.startswith("The database was unreachable during the test stage")
    assert deployment.lease_expires_at is None and deployment.finished_at is not None
    assert not deployment.stages.filter(status__in=["running", "pending"]).exists()
    # The next request runs normally: no lock or lease was left behind.
    repository.test_command = "sh /app/test.sh"
    repository.save()
    again = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    result = execute(again.pk, worker="outage-test")
    again.refresh_from_db()
    assert result == Status.SUCCEEDED, again.error
