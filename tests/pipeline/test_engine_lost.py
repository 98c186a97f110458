"""A Docker engine that goes away mid-stage fails the stage with a sentence, after a
few paced reconnects: never a busy loop on a dead socket, never a raw exception."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import docker
import pytest

from deployments.pipeline import testrun
from deployments.pipeline.base import never_stop
from deployments.pipeline.docker_client import RECONNECT_DELAYS, EngineLost
from tests.pipeline.engine_proxy import EngineProxy


class CountingApi:
    """docker-py's low-level API with its `wait` calls counted."""

    def __init__(self, api: docker.APIClient) -> None:
        self._api = api
        self.waits = 0

    def wait(self, *args, **kwargs):
        self.waits += 1
        return self._api.wait(*args, **kwargs)


def test_waiting_on_a_vanished_engine_backs_off_then_gives_up(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/gone.sock", version="1.41")
    counting = CountingApi(client.api)
    client.api = counting  # type: ignore[assignment]
    started = time.monotonic()
    cpu_started = time.process_time()

    with pytest.raises(EngineLost, match="the Docker engine went away during the test stage"):
        testrun._wait(client, "no-such-container", deadline=time.monotonic() + 60)

    # One try plus one per reconnect delay, with the pauses in between: a busy loop
    # would have made thousands of calls and burnt the CPU for the whole deadline.
    assert counting.waits == len(RECONNECT_DELAYS) + 1
    assert time.monotonic() - started >= 0.9 * sum(RECONNECT_DELAYS)
    assert time.process_time() - cpu_started < 1.0


def test_engine_going_away_during_the_test_stage_fails_it_with_a_sentence(
    tmp_path: Path, demo_image: str, docker_engine: docker.DockerClient
) -> None:
    engine_socket = os.environ["DOCKER_HOST"].removeprefix("unix://")
    proxy = EngineProxy(engine_socket, tmp_path / "engine.sock")
    client = docker.DockerClient(base_url=proxy.url)
    lines: list[str] = []
    started = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        if "slow suite started" in line:
            started.set()

    def pull_the_plug() -> None:
        if started.wait(30):
            time.sleep(0.3)
            proxy.go_away()

    threading.Thread(target=pull_the_plug, daemon=True).start()
    before = {c.id for c in docker_engine.containers.list(all=True)}
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineLost) as failure:
            testrun.run_tests(
                client,
                image=demo_image,
                command="sh -c 'echo slow suite started; sleep 120'",
                timeout=300,
                log=log,
                should_stop=never_stop,
            )
    finally:
        client.close()
        for container in docker_engine.containers.list(all=True):
            if container.id not in before:
                container.remove(force=True)

    assert str(failure.value).startswith("the Docker engine went away during the test stage")
    assert "Error(" not in str(failure.value)
    assert time.monotonic() - t0 < 30  # not the 120 s of the suite, nor the 300 s timeout
