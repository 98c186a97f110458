"""Redis restarts in the middle of a deployment (a Redis server of this test's own, a
real process, stopped and started again on the same port): the run goes on, no log line
is lost, and a viewer that reconnects gets the whole log, resuming exactly."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from django.test import Client

from deployments import services
from deployments.execution import execute
from deployments.models import LogLine, Status
from tests.live import free_port, serve_asgi
from tests.views.test_stream import Events

pytestmark = pytest.mark.django_db(transaction=True)


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path, settings) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url  # the log bus; the Celery broker stays on the shared one
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_restart_mid_run_loses_no_line_and_viewers_reconnect_to_the_whole_log(
    own_redis, dev, repository, dev_env, docker_engine
):
    repository.test_command = "sh -c 'for i in $(seq 1 40); do echo line $i; sleep 0.05; done'"
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(execute(deployment.pk, worker="redis-test")))
    thread.start()
    deadline = time.monotonic() + 90
    while not LogLine.objects.filter(deployment=deployment, text="line 10").exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the test stage never printed line 10"
        time.sleep(0.02)
    own_redis.stop()  # Redis goes away in the middle of the test output…
    time.sleep(1)
    own_redis.start()  # …and comes back empty (no persistence)
    thread.join(120)
    assert not thread.is_alive()

    deployment.refresh_from_db()
    assert outcome == [Status.SUCCEEDED] and deployment.status == Status.SUCCEEDED, deployment.error
    stored = list(
        LogLine.objects.filter(deployment=deployment)
        .order_by("entry_ms", "entry_seq")
        .values_list("text", "entry_ms", "entry_seq")
    )
    texts = [text for text, _, _ in stored]
    assert [t for t in texts if t.startswith("line ")] == [f"line {i}" for i in range(1, 41)]

    client = Client()
    client.force_login(dev)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    with serve_asgi() as base, httpx.Client(base_url=base, cookies=cookies, timeout=20) as http:
        # A viewer that reconnects from the start gets the whole log, then the end.
        with http.stream(
            "GET", f"/deployments/{deployment.pk}/events", params={"format": "text"}
        ) as response:
            events = Events(response).rest()
        lines = [e["data"] for e in events if e["event"] == "line"]
        assert lines == texts
        assert events[-1]["event"] == "end"
        # One that was cut off after line 5 resumes exactly after it.
        line5 = next(f"{ms}-{seq}" for text, ms, seq in stored if text == "line 5")
        with http.stream(
            "GET", f"/deployments/{deployment.pk}/events", params={"format": "text"},
            headers={"Last-Event-ID": line5},
        ) as response:  # fmt: skip
            resumed = [e["data"] for e in Events(response).rest() if e["event"] == "line"]
        assert resumed == texts[texts.index("line 5") + 1 :]
