"""`make run` as a new user runs it: the supervisor in the runtime environment (runtime
packages only, so a missing runtime dependency fails here), from an empty state folder,
on free ports. Log in, deploy the demo, follow the live log, open the app; press Ctrl-C
during a second deployment's test stage; start again and find the same state.

The Docker engine is the test suite's own (scripts/run.sh uses a reachable engine
instead of starting one); Redis and the registry are started by `make run` itself.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from deployments.demo_app import _git
from tests.live import CHROMIUM, CHROMIUM_ARGS, free_port
from tests.run.client import ShipmateUser

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PYTHON = ROOT / ".venv-run" / "bin" / "python"
# Ctrl-C during a test stage: the worker cancels within its heartbeat, the services
# stop side by side. Far below the minutes it took before; generous for a busy CI.
STOP_BOUND = 45

pytestmark = [pytest.mark.timeout(600)]


class MakeRun:
    """One `scripts/run.sh` in a session of its own, as a terminal's foreground job."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "run.sh")],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float = 180) -> None:
        """Until the login page answers and make run has said where it runs (it says so
        once it has seen the page answer itself)."""
        started = time.monotonic()
        deadline = started + timeout
        answered = False
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"make run exited with {self.proc.returncode}:\n{self.output[-4000:]}")
            if answered and "press Ctrl-C to stop" in self.output.rsplit("shipmate: stopped", 1)[-1]:
                return
            try:
                if not answered and httpx.get(f"{url}/login/", timeout=2, trust_env=False).status_code == 200:
                    answered = True
                    print(f"\nmake run: login page answered after {time.monotonic() - started:.1f} s")
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"the login page did not answer within {timeout} s:\n{self.output[-4000:]}")

    def ctrl_c(self) -> float:
        """SIGINT to the foreground process group, as the terminal sends it; seconds to exit."""
        assert self.proc is not None
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not exit within 120 s of Ctrl-C:\n{self.output[-4000:]}")
        return time.monotonic() - started

    def kill(self) -> None:
        """After a failed test: everything started for this state folder, not only make run."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in processes_of(Path(self.env["SHIPMATE_STATE_DIR"])):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def processes_of(state: Path) -> dict[int, str]:
    """Every live process started for this state folder: they all inherit SHIPMATE_STATE_DIR."""
    marker = f"SHIPMATE_STATE_DIR={state}\0".encode()
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker not in Path(f"/proc/{pid}/environ").read_bytes():
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is already dead; its parent just has not reaped it
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
        except OSError:
            continue
    return found


def wait_gone(state: Path, seconds: float = 5) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := processes_of(state)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def passwords(output: str) -> dict[str, str]:
    return dict(re.findall(r"login (\w+)\s+password (\S+)", output))


def deployment_row(state: Path, pk: int) -> tuple[str, str]:
    with sqlite3.connect(state / "shipmate.sqlite3") as db:
        return db.execute("SELECT status, error FROM deployments_deployment WHERE id = ?", [pk]).fetchone()


def add_slow_branch(repo: Path) -> None:
    """A branch of the demo whose test suite takes minutes: Ctrl-C lands in its test stage."""
    _git(repo, "checkout", "-q", "-b", "slow")
    (repo / "test.sh").write_text("#!/bin/sh\necho slow tests started\nsleep 600\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qam", "slow tests")
    _git(repo, "checkout", "-q", "main")


@pytest.fixture
def run_env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "SHIPMATE_", "CELERY_"))
        and k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "PYTHONPATH"}
    }
    demo_base = free_port_block(3)
    env.update(
        SHIPMATE_STATE_DIR=str(state),
        SHIPMATE_PORT=str(free_port()),
        SHIPMATE_REDIS_PORT=str(free_port()),
        SHIPMATE_REGISTRY_PORT=str(free_port()),
        SHIPMATE_DEMO_PORT_BASE=str(demo_base),
        SHIPMATE_STOP_GRACE="20",
        DOCKER_HOST=os.environ["DOCKER_HOST"],
    )
    return env


def free_port_block(size: int) -> int:
    """A base port B with B+1 … B+size free (the demo's dev, stage and live)."""
    for _ in range(50):
        base = free_port()
        if base + size > 65535:
            continue
        socks = []
        try:
            for offset in range(1, size + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", base + offset))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


@pytest.fixture
def demo_containers():
    yield
    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"name": "shipmate-demo-"}):
        container.remove(force=True)
    client.close()


def deploy_in_the_browser(url: str, password: str) -> int:
    """Log in as dev in Chromium, deploy the demo's main to dev, and wait until the page
    itself shows Succeeded: what a person sees, timed in the DOM.

    In a thread of its own: the browser tests' pytest-playwright fixtures leave an
    asyncio loop running in the main thread, where the sync API refuses to start."""
    result: dict[str, object] = {}

    def drive() -> None:
        try:
            result["pk"] = _deploy_in_the_browser(url, password)
        except BaseException as exc:  # handed back to the test's thread
            result["error"] = exc

    thread = threading.Thread(target=drive, name="chromium")
    thread.start()
    thread.join(300)
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    assert "pk" in result, "the browser did not finish within 300 s"
    return int(result["pk"])  # type: ignore[call-overload]


def _deploy_in_the_browser(url: str, password: str) -> int:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{url}/login/")
            page.fill("#id_username", "dev")
            page.fill("#id_password", password)
            page.click("button[type=submit]")
            page.goto(f"{url}/deploy/")
            page.select_option("#id_repository", label="demo")
            page.fill("#id_ref", "main")
            page.select_option("#id_environment", label="dev")
            clicked = time.monotonic()
            page.click("#deploy-form button[type=submit]")
            page.wait_for_selector("#log .line", timeout=60_000)
            first_line = time.monotonic() - clicked
            expect(page.locator("#status")).to_have_text("Succeeded", timeout=120_000)
            done = time.monotonic() - clicked
            print(f"\nmake run, browser: click → first log line {first_line:.2f} s, → Succeeded {done:.1f} s")
            return int(page.url.rstrip("/").rsplit("/", 1)[1])
        finally:
            browser.close()


def test_runtime_environment_has_no_test_packages():
    """The run test below is only worth something if dev packages cannot hide a gap."""
    result = subprocess.run([str(RUNTIME_PYTHON), "-c", "import pytest"], capture_output=True)
    assert result.returncode != 0


def test_make_run_serves_deploys_stops_on_ctrl_c_and_restarts_with_its_state(
    tmp_path: Path, run_env: dict[str, str], demo_containers: None
) -> None:
    state = Path(run_env["SHIPMATE_STATE_DIR"])
    url = f"http://127.0.0.1:{run_env['SHIPMATE_PORT']}"
    run = MakeRun(run_env, tmp_path / "make-run.log")
    try:
        run.start()
        run.wait_ready(url)
        logins = passwords(run.output)
        assert set(logins) == {"admin", "release", "dev"}, run.output
        assert f"Shipmate runs on {url}/" in run.output

        first = deploy_in_the_browser(url, logins["dev"])
        user = ShipmateUser(url)
        user.login("dev", logins["dev"])
        stream = user.follow(first)
        assert "data: status: succeeded" in stream and stream.endswith("event: end\ndata: succeeded\n\n")
        assert "stage test: succeeded" in stream
        app = httpx.get(f"http://127.0.0.1:{int(run_env['SHIPMATE_DEMO_PORT_BASE']) + 1}/", trust_env=False)
        assert "Hello from Shipmate demo" in app.text

        add_slow_branch(state / "demo-repo")
        second = user.deploy("demo", "slow", "dev")
        user.follow(second, until="slow tests started")
        user.close()
        started = processes_of(state)
        # redis, registry, web, beat, the worker and its two pool processes at least
        assert len(started) >= 7, started
        # The notifications worker consumes only its own queue; the deployment worker not it.
        notifier_log = (state / "notifier.log").read_text()
        assert "ready." in notifier_log and ".> notifications " in notifier_log, notifier_log[-2000:]
        assert ".> notifications " not in (state / "worker.log").read_text()

        seconds = run.ctrl_c()
        print(f"\nmake run: Ctrl-C during the test stage to exit: {seconds:.1f} s")
        left = wait_gone(state)
        assert not left, f"still running after make run exited: {left}"
        assert seconds < STOP_BOUND, run.output[-3000:]
        status, error = deployment_row(state, second)
        assert status in ("cancelled", "failed")
        assert error == "Cancelled: Shipmate was stopped during the test stage."
        assert "the worker stopped after" in run.output

        # Again: same database, same passwords, same history.
        run.start()
        run.wait_ready(url)
        assert passwords(run.output.split("shipmate: stopped")[-1]) == logins
        again = ShipmateUser(url)
        again.login("dev", logins["dev"])
        history = again.http.get("/deployments/").text
        again.close()
        assert f"/deployments/{first}/" in history and f"/deployments/{second}/" in history
        run.ctrl_c()
        assert not wait_gone(state)
    finally:
        run.kill()
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "stop", "run"], env=run_env, check=False)


def test_a_process_that_dies_is_named_with_its_log_and_the_rest_is_stopped(
    tmp_path: Path, run_env: dict[str, str]
) -> None:
    state = Path(run_env["SHIPMATE_STATE_DIR"])
    run = MakeRun(run_env, tmp_path / "make-run.log")
    try:
        run.start()
        run.wait_ready(f"http://127.0.0.1:{run_env['SHIPMATE_PORT']}")
        assert run.proc is not None
        workers = [
            pid
            for pid, command in processes_of(state).items()
            if " worker " in command
            # The deployment worker, not the notifications one (`command` is cut at 100 characters).
            and b"shipmate-run@" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and Path(f"/proc/{pid}/stat").read_text().split()[3] == str(run.proc.pid)
        ]
        assert len(workers) == 1, processes_of(state)
        deadline = time.monotonic() + 60
        while "ready." not in (state / "worker.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(workers[0], signal.SIGKILL)

        code = run.proc.wait(timeout=60)
        left = wait_gone(state)
    finally:
        run.kill()
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "stop", "run"], env=run_env, check=False)

    assert code == 1
    assert not left, left
    out = run.output
    assert f"the worker process exited with code -9. Last 20 lines of {state / 'worker.log'}:" in out
    assert "ready." in out.split("Last 20 lines of")[1]  # the end of the worker's own log


def test_killing_make_run_takes_its_processes_with_it(tmp_path: Path, run_env: dict[str, str]) -> None:
    """kill -9 of the supervisor (no chance to clean up): worker, beat and web die with it."""
    state = Path(run_env["SHIPMATE_STATE_DIR"])
    run = MakeRun(run_env, tmp_path / "make-run.log")
    try:
        run.start()
        run.wait_ready(f"http://127.0.0.1:{run_env['SHIPMATE_PORT']}")
        assert run.proc is not None
        os.kill(run.proc.pid, signal.SIGKILL)  # the supervisor alone, not its group
        run.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [c for c in processes_of(state).values() if "celery" in c or "uvicorn" in c]
            if not left:
                break
            time.sleep(0.2)
        assert not left, left
    finally:
        run.kill()
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "stop", "run"], env=run_env, check=False)
