"""One rollout per placement, in FIFO order, with builds running ahead, when many
claimers race on PostgreSQL (READ COMMITTED): threads calling the claim directly, then
two real Celery workers."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from celery import signals
from django.db import connection

from deployments import services
from deployments.models import Deployment, Phase, Status
from deployments.services import lifecycle
from tests.services.test_deployment_run import FINAL, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 16


def race_claims(candidates: list[int], *, aim_at: list[int]) -> list[int]:
    """One round: THREADS threads claim at the same instant; returns the ids claimed.
    Half the threads aim at `aim_at` (the head and the one after it), so every round
    races for the head and for the slot right behind it; the rest pick any deployment,
    finished ones included."""
    barrier = threading.Barrier(THREADS)
    claimed: list[int] = []
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        target = aim_at[(i // 2) % len(aim_at)] if i % 2 == 0 else random.choice(candidates)
        try:
            barrier.wait(timeout=10)
            if lifecycle.deployment_claim(deployment_id=target, worker=f"w{i}") is not None:
                claimed.append(target)
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return claimed


def running_in(environment: Any, phase: str = Phase.RELEASE) -> list[int]:
    return list(
        Deployment.objects.filter(environment=environment, status=Status.RUNNING, phase=phase).values_list(
            "pk", flat=True
        )
    )


def test_rollout_claims_race_from_many_threads_and_only_the_head_wins(
    high_ids, private_queue, dev, repository, dev_env
):
    digest = "r/demo@sha256:" + "b" * 64
    ids = [
        Deployment.objects.create(
            repository=repository, environment=dev_env, ref="main", requested_by=dev,
            status=Status.READY, image_digest=digest,
        ).pk
        for _ in range(8)
    ]  # fmt: skip
    waiting = list(ids)
    rounds = 0
    while waiting:
        rounds += 1
        assert rounds < 200, f"no progress; still waiting: {waiting}"
        claimed = race_claims(ids, aim_at=waiting[:2])
        assert len(claimed) <= 1, f"round {rounds}: {claimed} all claimed"
        assert running_in(dev_env) == claimed
        if not claimed:
            continue
        assert claimed == [waiting[0]], "a deployment other than the FIFO head was claimed"
        # While it rolls out, nobody else may start rolling out there, the head included.
        assert race_claims(ids, aim_at=waiting[:2]) == []
        assert running_in(dev_env) == claimed
        deployment = Deployment.objects.get(pk=claimed[0])
        lifecycle.deployment_finish(
            deployment=deployment, status=Status.SUCCEEDED, token=deployment.claim_token
        )
        waiting.pop(0)

    done = Deployment.objects.filter(pk__in=ids)
    assert set(done.values_list("status", flat=True)) == {Status.SUCCEEDED}
    assert list(done.order_by("started_at").values_list("pk", flat=True)) == ids
    assert all(d.attempts == 1 for d in done)


def test_build_claims_race_and_each_build_runs_once(high_ids, private_queue, dev, repository, dev_env):
    ids = [
        Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev).pk
        for _ in range(8)
    ]
    claimed: list[int] = []
    for _ in range(4):  # every thread aims at some deployment; all of them are free to build
        claimed += race_claims(ids, aim_at=ids)
    assert sorted(claimed) == sorted(set(claimed)), "a build was claimed twice"
    assert set(claimed) == set(ids)
    assert sorted(running_in(dev_env, Phase.BUILD)) == sorted(ids)
    assert running_in(dev_env) == []


def stage_times(deployment: Deployment) -> dict[str, Any]:
    return {s.name: s for s in deployment.stages.all()}


def rollout_window(deployment: Deployment) -> tuple[Any, Any]:
    stages = stage_times(deployment)
    return stages["rollout"].started_at, stages["verify"].finished_at or stages["rollout"].finished_at


def build_window(deployment: Deployment) -> tuple[Any, Any]:
    stages = stage_times(deployment)
    return stages["checkout"].started_at, stages["push"].finished_at


def assert_rollouts_in_fifo_order(runs_here: list[Deployment], where: str) -> None:
    by_rollout = sorted(runs_here, key=lambda d: rollout_window(d)[0])
    assert [d.pk for d in by_rollout] == [d.pk for d in runs_here], f"{where} did not roll out in FIFO order"
    for before, after in zip(by_rollout, by_rollout[1:], strict=False):
        assert rollout_window(before)[1] <= rollout_window(after)[0], (
            f"#{before.pk} and #{after.pk} rolled out at the same time in {where}"
        )


@pytest.fixture
def two_workers(private_queue: str, docker_engine: Any) -> Iterator[list[Any]]:
    """Two real workers, each in its own thread, consuming the same queue from the
    real Redis broker (no ping check: Shipmate keeps no result backend). Without the
    event loop: kombu keeps one hub per process, and two workers sharing it read each
    other's Redis replies."""
    from celery.contrib.testing.worker import start_worker

    from pipeline_ui.celery import app

    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                start_worker(
                    app,
                    pool="solo",
                    perform_ping_check=False,
                    shutdown_timeout=60,
                    hostname=f"{name}@test",
                    queues=[private_queue],
                    use_eventloop=False,
                )
            )
            for name in ("w1", "w2")
        ]
        yield workers


@pytest.fixture
def ran_on() -> Iterator[dict[int, str]]:
    """Which worker node ran (claimed) each deployment. Deployment.worker cannot tell:
    Celery's embedded test worker reports the machine's host name as
    `request.hostname`, so both workers would read the same there."""
    received: dict[str, str] = {}
    ran: dict[int, str] = {}

    def on_received(sender: Any, request: Any, **_: Any) -> None:
        received[request.id] = sender.hostname

    def on_postrun(task_id: str, args: Any, retval: Any, **_: Any) -> None:
        if retval != "not claimed":
            ran[int(args[0])] = received.get(task_id, "?")

    signals.task_received.connect(on_received, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    try:
        yield ran
    finally:
        signals.task_received.disconnect(on_received)
        signals.task_postrun.disconnect(on_postrun)


def test_two_real_workers_run_one_environment_in_fifo_order(
    high_ids, two_workers, ran_on, dev, repository, make_environment
):
    busy, other = make_environment("busy"), make_environment("other", order=20)
    plan = [(busy, "main"), (other, "v1.0"), (busy, "v1.0"), (other, "main"), (busy, "main"),
            (busy, "v1.0"), (other, "main"), (busy, "main")]  # fmt: skip
    requested = [
        services.deployment_request(user=dev, repository=repository, environment=env, ref=ref)
        for env, ref in plan
    ]
    finished = [wait_for(d, FINAL, timeout=120) for d in requested]

    assert [d.status for d in finished] == [Status.SUCCEEDED] * len(plan), [d.error for d in finished]
    for env in (busy, other):
        assert_rollouts_in_fifo_order([d for d in finished if d.environment_id == env.pk], str(env))
    # Both workers took part: with each worker holding one message at a time, the
    # second environment's run goes to whichever worker is not busy with the first.
    deadline = time.monotonic() + 10  # the task returns a moment after it commits the status
    while len(ran_on) < len(finished) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = {ran_on.get(d.pk) for d in finished}
    assert workers == {"w1@test", "w2@test"}, ran_on
    assert _overlapped([d for d in finished if d.environment_id == busy.pk],
                       [d for d in finished if d.environment_id == other.pk])  # fmt: skip


def _overlapped(a: list[Deployment], b: list[Deployment]) -> bool:
    return any(x.started_at < y.finished_at and y.started_at < x.finished_at for x in a for y in b)


def test_two_placements_in_one_environment_run_side_by_side_each_in_fifo_order(
    high_ids, two_workers, ran_on, dev, repository, make_environment, tmp_path
):
    from deployments.demo_app import create_hello_repo
    from deployments.models import Repository
    from tests.conftest import place
    from tests.live import free_port

    env = make_environment("shared")
    path = create_hello_repo(tmp_path / "hello")
    hello = Repository.objects.create(
        name="hello", git_url=str(path), test_command="sh -c 'sh /app/test.sh; sleep 1'", image_name="t/hello"
    )
    repository.test_command = "sh -c 'sh /app/test.sh; sleep 1'"  # long enough to overlap
    repository.save()
    place(hello, env, target_settings={"port": free_port()})
    plan = [repository, hello, repository, hello, repository, hello]
    requested = [
        services.deployment_request(user=dev, repository=repo, environment=env, ref="main") for repo in plan
    ]
    finished = [wait_for(d, FINAL, timeout=180) for d in requested]

    assert [d.status for d in finished] == [Status.SUCCEEDED] * len(plan), [d.error for d in finished]
    per_app = {r.pk: [d for d in finished if d.repository_id == r.pk] for r in (repository, hello)}
    for app_runs in per_app.values():
        assert_rollouts_in_fifo_order(app_runs, "a placement")
    # One environment, two applications: their runs overlapped (one worker each).
    assert _overlapped(per_app[repository.pk], per_app[hello.pk])
    assert any(
        _windows_overlap(rollout_window(a), rollout_window(b))
        for a in per_app[repository.pk]
        for b in per_app[hello.pk]
    ), "the two applications never rolled out at the same time"


def _windows_overlap(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_builds_run_ahead_while_one_placement_rolls_out_in_fifo_order(
    high_ids, two_workers, ran_on, dev, repository, make_environment
):
    """Two workers, one placement: the second request builds and tests while the first
    one builds or rolls out, yet the rollouts go one at a time, in request order."""
    env = make_environment("ahead")
    repository.test_command = "sh -c 'sh /app/test.sh; sleep 1.5'"
    repository.save()
    requested = [
        services.deployment_request(user=dev, repository=repository, environment=env, ref=ref)
        for ref in ("main", "v1.0", "main", "v1.0")
    ]
    finished = [wait_for(d, FINAL, timeout=180) for d in requested]

    assert [d.status for d in finished] == [Status.SUCCEEDED] * len(finished), [d.error for d in finished]
    assert_rollouts_in_fifo_order(finished, str(env))
    # Builds ran ahead: a later request was building while an earlier one was still on its way.
    ahead = [
        (a.pk, b.pk)
        for a, b in zip(finished, finished[1:], strict=False)
        if build_window(b)[0] < rollout_window(a)[1] and build_window(b)[1] is not None
    ]
    assert ahead, "no build ran ahead of the rollout before it"
