"""The `shipmate` CLI against a live Shipmate: deploy and follow, failure exit codes,
resuming the live log across a dropped connection, login, refusals, approvals."""

from __future__ import annotations

import json
import stat
import threading
import time
from typing import Any

import pytest

from deployments.models import Deployment, LogLine, Status
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)


def stored_lines(pk: int) -> list[bytes]:
    texts = LogLine.objects.filter(deployment_id=pk).order_by("entry_ms", "entry_seq")
    return [t.encode() for t in texts.values_list("text", flat=True)]


def wait_for_status(pk: int, statuses: set[str], timeout: float = 120) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = Deployment.objects.get(pk=pk)
        if deployment.status in statuses:
            return deployment
        time.sleep(0.2)
    raise AssertionError(f"#{pk} still {deployment.status} after {timeout} s")


def test_deploy_follow_prints_the_log_and_exits_0_on_success(
    celery_worker, dev, repository, dev_env, shipmate_as
):
    shipmate = shipmate_as(dev)

    done = shipmate("deploy", "demo", "main", "dev", "--follow")

    assert done.returncode == 0, done.stderr.decode()
    pk = Deployment.objects.get().pk
    printed = done.stdout.splitlines()
    assert b"all demo tests passed" in done.stdout
    assert printed == stored_lines(pk)  # every line, in order, nothing else on stdout
    assert f"#{pk} demo main".encode() in done.stderr and b"succeeded" in done.stderr

    status = json.loads(shipmate("--json", "status", str(pk)).stdout)
    assert status["status"] == "succeeded" and status["id"] == pk
    apps = shipmate("apps").stdout.decode()
    assert "demo" in apps and status["commit_sha"][:7] in apps and "succeeded" in apps
    for output in (done.stdout, done.stderr, apps.encode()):
        assert shipmate.token.encode() not in output


def test_a_failing_test_stage_exits_1(celery_worker, dev, repository, dev_env, shipmate_as):
    repository.test_command = "sh -c 'echo broken test; exit 4'"
    repository.save()

    done = shipmate_as(dev)("deploy", "demo", "main", "dev", "--follow")

    assert done.returncode == 1, done.stderr.decode()
    assert b"broken test" in done.stdout
    assert Deployment.objects.get().status == Status.FAILED


class Reader(threading.Thread):
    """Collects a pipe's lines as they come."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe, self.lines = pipe, []

    def run(self) -> None:
        for line in self.pipe:
            self.lines.append(line.rstrip(b"\n"))

    def wait_for(self, needle: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in list(self.lines)):
            assert time.monotonic() < deadline, f"{needle!r} never came: {self.lines[-5:]}"
            time.sleep(0.01)


def test_logs_follow_resumes_after_a_dropped_connection_with_no_gap_and_no_duplicate(
    celery_worker, server, dev, repository, dev_env, shipmate_as
):
    # Test output that keeps coming while the connection is down (busybox usleep: µs).
    repository.test_command = (
        "sh -c 'i=0; while [ $i -lt 600 ]; do echo \"\033[32mline $i\033[0m\"; i=$((i+1)); usleep 4000; done'"
    )
    repository.save()
    shipmate = shipmate_as(dev)
    pk = json.loads(shipmate("--json", "deploy", "demo", "main", "dev").stdout)["id"]
    proxy = TcpProxy(int(server.rsplit(":", 1)[1]))
    try:
        follower = shipmate.popen(
            "logs", str(pk), "--follow", env={"SHIPMATE_URL": f"http://127.0.0.1:{proxy.port}"}
        )
        out, err = Reader(follower.stdout), Reader(follower.stderr)
        out.start(), err.start()
        out.wait_for(b"line 50\x1b")
        proxy.pause()  # drops the stream mid-way, and every reconnection while paused
        err.wait_for(b"resuming")
        assert not any(b"line 599" in line for line in out.lines), "the cut should fall mid-stream"
        proxy.resume()
        assert follower.wait(timeout=120) == 0, b"\n".join(err.lines).decode()
        out.join(10)
    finally:
        proxy.close()

    assert Deployment.objects.get(pk=pk).status == Status.SUCCEEDED
    assert out.lines == stored_lines(pk)
    numbered = [line for line in out.lines if line.startswith(b"\x1b[32mline ")]
    assert numbered == [f"\x1b[32mline {i}\x1b[0m".encode() for i in range(600)]


def test_login_keeps_the_token_in_a_private_file_and_never_prints_it(server, dev, token_for, tmp_path):
    from tests.cli.conftest import Shipmate

    shipmate = Shipmate(tmp_path / "xdg")
    token = token_for(dev, ("read",))

    done = shipmate("login", server, input=token + "\n")  # the hidden prompt

    assert done.returncode == 0, done.stderr.decode()
    path = tmp_path / "xdg" / "shipmate" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": server, "token": token}
    assert token.encode() not in done.stdout + done.stderr

    bad = shipmate("login", server, "--token", token[:-4] + "xxxx")
    assert bad.returncode == 2
    assert b"Unknown token. (unauthenticated, HTTP 401)" in bad.stderr
    assert token[:-4].encode() not in bad.stdout + bad.stderr
    assert json.loads(path.read_text())["token"] == token  # the good one stays

    envs = shipmate("--json", "envs", env={"SHIPMATE_URL": "http://127.0.0.1:9"})
    assert envs.returncode == 2 and b"Cannot reach http://127.0.0.1:9" in envs.stderr


def test_wait_times_out_with_3_on_a_protected_environment_and_a_second_user_approves(
    celery_worker, dev, release, repository, live_env, shipmate_as
):
    developer, approver = shipmate_as(dev), shipmate_as(release)

    waited = developer("deploy", "demo", "main", "live", "--wait", "--timeout", "2")

    assert waited.returncode == 3, waited.stderr.decode()
    assert b"Timed out after 2 s" in waited.stderr
    pk = Deployment.objects.get().pk
    wait_for_status(pk, {Status.AWAITING_APPROVAL})

    own = developer("approve", str(pk))
    assert own.returncode == 2
    assert b"You cannot approve your own deployment. (refused, HTTP 409)" in own.stderr

    approved = approver("--json", "approve", str(pk), "--comment", "looks right")
    assert approved.returncode == 0, approved.stderr.decode()
    assert json.loads(approved.stdout)["status"] in {"approved", "running", "succeeded"}

    final = developer("--json", "logs", str(pk), "--follow")
    assert final.returncode == 0, final.stderr.decode()
    assert wait_for_status(pk, {Status.SUCCEEDED, Status.FAILED}).status == Status.SUCCEEDED


def test_lock_and_unlock_through_the_cli_and_a_refused_deploy_exits_2(
    dev, admin, repository, dev_env, shipmate_as
):
    owner, developer = shipmate_as(admin), shipmate_as(dev)

    locked = owner("--json", "lock", "dev", "--reason", "database migration", "--expires", "2h")
    assert locked.returncode == 0, locked.stderr.decode()
    assert json.loads(locked.stdout)["is_locked"] is True
    assert b"yes (admin: database migration)" in developer("envs").stdout

    refused = developer("deploy", "demo", "main", "dev")
    assert refused.returncode == 2
    assert b"(refused, HTTP 409)" in refused.stderr and b"locked" in refused.stderr.lower()

    forbidden = developer("unlock", "dev")
    assert forbidden.returncode == 2, forbidden.stdout

    assert owner("unlock", "dev").returncode == 0
    assert b"no" in developer("envs").stdout.splitlines()[1]
