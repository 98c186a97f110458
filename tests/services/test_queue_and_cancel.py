"""Cancel, the per-environment FIFO queue and the reaper, with a real worker."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import services
from deployments.models import AuditEvent, Deployment, Stage, Status
from deployments.services import runs

from .test_deployment_run import FINAL, wait_for


def wait_stage(deployment: Deployment, name: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Stage.objects.filter(deployment=deployment, name=name, status=status).exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"stage {name} never became {status}")


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_the_running_test_step(celery_worker, dev, repository, dev_env, docker_engine, tmp_path):
    from deployments.demo_app import add_commit, create_demo_repo

    repo = create_demo_repo(tmp_path / "slow")
    add_commit(repo, "slow tests", {"test.sh": "echo starting slow tests\nsleep 60\n"})
    repository.git_url = str(repo)
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    wait_stage(deployment, "test", "running")
    time.sleep(0.5)
    started = time.monotonic()
    services.deployment_cancel(user=dev, deployment=deployment)
    deployment = wait_for(deployment, FINAL, timeout=20)
    assert deployment.status == Status.CANCELLED
    assert time.monotonic() - started < 10
    assert deployment.stages.get(name="test").status == "cancelled"
    assert deployment.stages.get(name="rollout").status == "cancelled"
    # The test container is gone, not left running in the background.
    tag = f"{deployment.commit_sha}"
    assert not [c for c in docker_engine.containers.list() if tag in " ".join(c.image.tags)]
    assert AuditEvent.objects.filter(action="deployment.cancel", object_id=str(deployment.pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_deployments_to_one_environment_run_one_at_a_time_in_order(celery_worker, dev, repository, dev_env):
    first = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    second = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="v1.0")
    third = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    for d in (first, second, third):
        wait_for(d, FINAL)
    assert [d.status for d in (first, second, third)] == [Status.SUCCEEDED] * 3
    assert first.finished_at <= second.started_at
    assert second.finished_at <= third.started_at


@pytest.mark.django_db
def test_claim_refuses_a_second_run_in_a_busy_environment(dev, repository, dev_env):
    a = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    b = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    assert runs.deployment_claim(deployment_id=b.pk, worker="w") is None  # not first in line
    assert runs.deployment_claim(deployment_id=a.pk, worker="w") is not None
    assert runs.deployment_claim(deployment_id=a.pk, worker="w2") is None  # duplicate delivery
    assert runs.deployment_claim(deployment_id=b.pk, worker="w") is None  # environment busy


@pytest.mark.django_db
def test_reaper_requeues_a_run_whose_worker_vanished_then_gives_up(dev, repository, dev_env, settings):
    settings.MAX_ATTEMPTS = 2
    d = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    for position, name in enumerate(["checkout", "rollout"]):
        Stage.objects.create(deployment=d, name=name, position=position)
    runs.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert runs.reap()["requeued"] == 1
    d.refresh_from_db()
    assert d.status == Status.QUEUED
    runs.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert runs.reap()["failed"] == 1
    d.refresh_from_db()
    assert d.status == Status.FAILED and "worker lost" in d.error


@pytest.mark.django_db
def test_reaper_fails_a_run_lost_during_rollout_instead_of_repeating_it(dev, repository, dev_env):
    d = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    Stage.objects.create(deployment=d, name="rollout", position=5, status="running")
    runs.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    runs.reap()
    d.refresh_from_db()
    assert d.status == Status.FAILED and "during the rollout" in d.error
