"""A worker that stops: its running deployments are cancelled with a reason, and
runs it left behind are settled with a sentence instead of staying "running"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from deployments.models import AuditEvent, Stage, Status
from deployments.services import lifecycle
from deployments.tasks import cancel_runs_on_shutdown, settle_runs_of_a_previous_life, worker_name
from tests.services.test_lifecycle import queued

pytestmark = pytest.mark.django_db


def claimed(repository, env, user, worker: str):
    d = queued(repository, env, user)
    deployment, _ = lifecycle.deployment_claim(deployment_id=d.pk, worker=worker)
    return deployment


@pytest.mark.django_db(transaction=True)  # the hook closes its database connection
def test_a_stopping_worker_asks_only_its_own_runs_to_stop(dev, repository, dev_env, make_environment):
    stage_env = make_environment("stage", order=20)
    mine = claimed(repository, dev_env, dev, worker_name("node-a@host"))
    other = claimed(repository, stage_env, dev, worker_name("node-b@host"))

    cancel_runs_on_shutdown(sender="node-a@host")

    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.cancel_requested, mine.stop_reason) == (True, "Shipmate was stopped")
    assert (other.cancel_requested, other.stop_reason) == (False, "")
    assert lifecycle.deployment_heartbeat(deployment_id=mine.pk, token=mine.claim_token) == (True, True)


def test_runs_a_killed_worker_left_are_cancelled_with_the_stage_they_were_in(dev, repository, dev_env):
    d = claimed(repository, dev_env, dev, "host:node")
    Stage.objects.filter(deployment=d, name="test").update(status="running")

    assert lifecycle.deployments_settle_stopped(worker="host:node") == 1

    d.refresh_from_db()
    assert d.status == Status.CANCELLED
    assert d.error == "Cancelled: Shipmate was stopped during the test stage."
    assert not d.stages.filter(status__in=["pending", "running"]).exists()
    assert AuditEvent.objects.filter(action="deployment.cancelled", object_id=str(d.pk)).exists()
    assert lifecycle.deployments_settle_stopped(worker="host:node") == 0  # idempotent


def test_settling_leaves_other_workers_runs_alone(dev, repository, dev_env):
    d = claimed(repository, dev_env, dev, "host:other")
    assert lifecycle.deployments_settle_stopped(worker="host:node") == 0
    d.refresh_from_db()
    assert d.status == Status.RUNNING


@pytest.mark.django_db(transaction=True)  # the hook closes its database connection
def test_a_starting_worker_settles_what_it_left_running_last_time(dev, repository, dev_env):
    d = claimed(repository, dev_env, dev, worker_name("node-a@host"))
    Stage.objects.filter(deployment=d, name="build").update(status="running")

    settle_runs_of_a_previous_life(sender=SimpleNamespace(hostname="node-a@host"))

    d.refresh_from_db()
    assert (d.status, d.error) == (
        Status.CANCELLED,
        "Cancelled: Shipmate was stopped during the build stage.",
    )
