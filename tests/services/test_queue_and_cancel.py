"""Cancel, the per-environment FIFO queue and the reaper, with a real worker."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import services
from deployments.models import AuditEvent, Deployment, Phase, Stage, Status
from deployments.services import lifecycle

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
    assert deployment.error == "Cancelled by dev during the test stage."
    assert time.monotonic() - started < 10
    assert deployment.stages.get(name="test").status == "cancelled"
    assert deployment.stages.get(name="rollout").status == "cancelled"
    # The test container is gone, not left running in the background.
    tag = f"{deployment.commit_sha}"
    assert not [c for c in docker_engine.containers.list() if tag in " ".join(c.image.tags)]
    assert AuditEvent.objects.filter(action="deployment.cancel", object_id=str(deployment.pk)).exists()


def rollout_window(deployment: Deployment) -> tuple[object, object]:
    """When the deployment's rollout began and its verification ended."""
    stages = {s.name: s for s in deployment.stages.all()}
    return stages["rollout"].started_at, stages["verify"].finished_at or stages["rollout"].finished_at


@pytest.mark.django_db(transaction=True)
def test_deployments_to_one_environment_roll_out_one_at_a_time_in_order(
    celery_worker, dev, repository, dev_env
):
    first = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    second = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="v1.0")
    third = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    for d in (first, second, third):
        wait_for(d, FINAL)
    assert [d.status for d in (first, second, third)] == [Status.SUCCEEDED] * 3
    windows = [rollout_window(d) for d in (first, second, third)]
    assert windows[0][1] <= windows[1][0]
    assert windows[1][1] <= windows[2][0]


def _built(deployment: Deployment) -> Deployment:
    Deployment.objects.filter(pk=deployment.pk).update(
        status=Status.READY, image_digest="r/demo@sha256:" + "a" * 64
    )
    deployment.refresh_from_db()
    return deployment


@pytest.mark.django_db
def test_builds_are_claimed_ahead_but_rollouts_wait_for_the_head_and_a_free_placement(
    dev, repository, dev_env
):
    a = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    b = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    # Builds run ahead: the second one builds while the first one does.
    claimed_b = lifecycle.deployment_claim(deployment_id=b.pk, worker="w")
    assert claimed_b is not None and claimed_b[1] == Phase.BUILD
    assert lifecycle.deployment_claim(deployment_id=b.pk, worker="w2") is None  # duplicate delivery
    claimed_a = lifecycle.deployment_claim(deployment_id=a.pk, worker="w")
    assert claimed_a is not None and claimed_a[1] == Phase.BUILD
    b, a = claimed_b[0], claimed_a[0]
    # b is built first, but a comes first: b waits as Ready.
    assert lifecycle.deployment_take_turn(deployment=b, token=b.claim_token) is False
    b.refresh_from_db()
    assert b.status == Status.READY and b.phase == Phase.NONE
    # A release message for b is refused while a, ahead of it, still builds.
    assert lifecycle.deployment_claim(deployment_id=b.pk, worker="w") is None
    assert lifecycle.deployment_take_turn(deployment=a, token=a.claim_token) is True
    a.refresh_from_db()
    assert a.status == Status.RUNNING and a.phase == Phase.RELEASE
    assert lifecycle.deployment_claim(deployment_id=b.pk, worker="w") is None  # placement busy
    assert lifecycle.deployment_finish(deployment=a, status=Status.SUCCEEDED, token=a.claim_token)
    claimed = lifecycle.deployment_claim(deployment_id=b.pk, worker="w")
    assert claimed is not None and claimed[1] == Phase.RELEASE
    assert AuditEvent.objects.filter(action="deployment.ready", object_id=str(b.pk)).exists()


@pytest.mark.django_db
def test_a_failed_build_ahead_lets_the_next_one_take_its_turn(dev, repository, dev_env):
    a = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    b = _built(
        Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    )
    a, _ = lifecycle.deployment_claim(deployment_id=a.pk, worker="w")
    assert lifecycle.deployment_claim(deployment_id=b.pk, worker="w") is None  # a is still in line
    lifecycle.deployment_finish(deployment=a, status=Status.FAILED, error="tests failed", token=a.claim_token)
    claimed = lifecycle.deployment_claim(deployment_id=b.pk, worker="w")
    assert claimed is not None and claimed[1] == Phase.RELEASE


@pytest.mark.django_db
def test_a_lock_parks_a_finished_build_as_ready(dev, release, repository, dev_env):
    a, _ = lifecycle.deployment_claim(
        deployment_id=Deployment.objects.create(
            repository=repository, environment=dev_env, ref="main", requested_by=dev
        ).pk,
        worker="w",
    )
    services.environment_lock(user=release, environment=dev_env, reason="incident")
    assert lifecycle.deployment_take_turn(deployment=a, token=a.claim_token) is False
    a.refresh_from_db()
    assert a.status == Status.READY
    event = AuditEvent.objects.get(action="deployment.ready", object_id=str(a.pk))
    assert "locked" in event.details["waiting_for"]


@pytest.mark.django_db
def test_reaper_requeues_a_run_whose_worker_vanished_then_gives_up(dev, repository, dev_env, settings):
    settings.MAX_ATTEMPTS = 2
    d = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    for position, name in enumerate(["checkout", "rollout"]):
        Stage.objects.create(deployment=d, name=name, position=position)
    lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.reap()["requeued"] == 1
    d.refresh_from_db()
    assert d.status == Status.QUEUED
    lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.reap()["failed"] == 1
    d.refresh_from_db()
    assert d.status == Status.FAILED and "worker lost" in d.error


@pytest.mark.django_db
def test_reaper_fails_a_run_lost_during_rollout_instead_of_repeating_it(dev, repository, dev_env):
    d = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    Stage.objects.create(deployment=d, name="rollout", position=5, status="running")
    lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    lifecycle.reap()
    d.refresh_from_db()
    assert d.status == Status.FAILED and "during the rollout" in d.error


@pytest.mark.django_db
def test_queue_positions_count_per_placement_and_include_builds_running_ahead(dev, repository, dev_env):
    from deployments.models import Repository
    from deployments.selectors import queue_position
    from tests.conftest import place

    other = Repository.objects.create(name="other", git_url=repository.git_url, image_name="t/other")
    place(other, dev_env, target_settings={"port": 1})
    a, b, c = (
        Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
        for _ in range(3)
    )
    elsewhere = Deployment.objects.create(repository=other, environment=dev_env, ref="main", requested_by=dev)
    lifecycle.deployment_claim(deployment_id=b.pk, worker="w")  # builds ahead, still in line
    assert [queue_position(d) for d in (a, b, c)] == [1, 2, 3]
    assert queue_position(elsewhere) == 1  # another application's line
    claimed_a, _ = lifecycle.deployment_claim(deployment_id=a.pk, worker="w")
    lifecycle.deployment_take_turn(deployment=claimed_a, token=claimed_a.claim_token)
    assert [queue_position(d) for d in (a, b, c)] == [None, 1, 2]  # a rolls out
