"""The Docker engine goes away in the middle of a build and comes back (the worker
reaches the real engine through a unix-socket proxy that the test drops and opens
again): the run fails at once with a sentence, nothing stays running, and the next
deployment builds and ships normally."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from deployments import services
from deployments.demo_app import add_commit, create_demo_repo
from deployments.execution import execute
from deployments.models import LogLine, Status
from tests.pipeline.engine_proxy import EngineProxy

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_engine_restart_mid_build_fails_the_run_clearly_and_the_next_one_ships(
    tmp_path: Path, settings, dev, repository, dev_env, docker_engine
):
    engine = os.environ["DOCKER_HOST"].removeprefix("unix://")
    socket_path = tmp_path / "engine.sock"
    proxy = EngineProxy(engine, socket_path)
    settings.DOCKER_HOST = proxy.url  # the worker's builds and tests go through the proxy
    repo = create_demo_repo(tmp_path / "slow-build")
    quick = (repo / "Dockerfile").read_text()
    slow = quick.replace("COPY www /www", "RUN echo building slowly && sleep 20\nCOPY www /www")
    add_commit(repo, "a slow build step", {"Dockerfile": slow})
    repository.git_url = str(repo)
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(execute(deployment.pk, worker="engine-test")))
    thread.start()
    deadline = time.monotonic() + 90
    while not LogLine.objects.filter(deployment=deployment, text__contains="building slowly").exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the slow build step never started"
        time.sleep(0.05)
    lost_at = time.monotonic()
    proxy.go_away()
    thread.join(60)
    assert not thread.is_alive()
    deployment.refresh_from_db()
    assert outcome == [Status.FAILED] and deployment.status == Status.FAILED
    assert deployment.error.startswith("the Docker engine went away during the build stage")
    assert time.monotonic() - lost_at < 30  # not the 20 s step plus a timeout
    assert deployment.stages.get(name="build").status == "failed"
    assert not deployment.stages.filter(status="running").exists()

    # The engine is back (a new socket at the same path): the next deployment ships.
    proxy = EngineProxy(engine, socket_path)
    try:
        add_commit(repo, "back to a quick build", {"Dockerfile": quick})
        again = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
        result = execute(again.pk, worker="engine-test")
        again.refresh_from_db()
        assert result == Status.SUCCEEDED, again.error
    finally:
        proxy.go_away()
