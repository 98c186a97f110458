"""`make run`: start Shipmate's services and processes, watch them, stop them cleanly.

Run by scripts/run.sh with the runtime virtual environment's Python; standard library
only. Every process runs in a session of its own, so the terminal's Ctrl-C reaches this
supervisor alone and it decides the order: web and beat stop, the worker gets a grace
period to cancel what it runs (its shutdown hook cancels its deployments), then is
killed; the services (Redis, the registry, the Docker engine) stop last. A second
Ctrl-C kills everything at once. If a process dies on its own, the supervisor names
it, prints the end of its log, stops the rest and exits non-zero.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STATE = Path(os.environ.get("SHIPMATE_STATE_DIR") or ROOT / ".state" / "run").resolve()
HOST = os.environ.get("SHIPMATE_HOST", "127.0.0.1")
PORT = int(os.environ.get("SHIPMATE_PORT", "8000"))
DEMO_PORT_BASE = int(os.environ.get("SHIPMATE_DEMO_PORT_BASE", "8080"))
GRACE = float(os.environ.get("SHIPMATE_STOP_GRACE", "15"))
# The worker's node name; its deployments are recorded as "<host>:<node>".
NODE = f"shipmate-run@{socket.gethostname()}"
# Notifications out have their own queue and worker: a receiver that hangs holds one of
# its threads, never a deployment (docs/decisions.md, "Notifications out").
NOTIFY_NODE = f"shipmate-notify@{socket.gethostname()}"
WORKER = f"{socket.gethostname()}:{NODE}"
TAIL_LINES = 20


PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    """In the child before exec: SIGKILL it if the supervisor dies (kill -9, a crash),
    so that no worker or web server outlives the `make run` that started it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class HardStop(Exception):
    """A second Ctrl-C: stop everything now."""


def say(text: str) -> None:
    print(f"shipmate: {text}", flush=True)


def since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError as exc:
        return f"(cannot read {path}: {exc.strerror})\n"


class Supervisor:
    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.interrupts = 0
        self.stopping = False
        self.services_started = False

    # --- signals -----------------------------------------------------------------
    def on_signal(self, signum: int, frame: object) -> None:
        self.interrupts += 1
        if self.interrupts >= 2:
            raise HardStop()
        if not self.stopping:
            # Still starting up: unwind whatever blocking step runs now.
            raise KeyboardInterrupt()

    # --- start -------------------------------------------------------------------
    def manage(self, *args: str) -> None:
        subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env, check=True)

    def start_services(self) -> None:
        self.services_started = True
        # A session of its own: the daemons it starts must not get the terminal's Ctrl-C.
        result = subprocess.run(
            [str(ROOT / "scripts" / "services.sh"), "start", "run"],
            env=self.env,
            start_new_session=True,
        )
        if result.returncode != 0:
            raise SystemExit(result.returncode)
        for line in (STATE / "services.env").read_text().splitlines():
            name, _, value = line.partition("=")
            if name:
                self.env[name] = value
        # The engine services.sh starts itself has no bridge (--bridge=none), so builds
        # there need the host network; an existing engine keeps the safer default.
        if self.env["DOCKER_HOST"].endswith("-run/docker.sock"):
            self.env.setdefault("SHIPMATE_BUILD_NETWORK_MODE", "host")

    def spawn(self, name: str, *argv: str) -> None:
        log = STATE / f"{name}.log"
        with log.open("ab") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_supervisor,
            )
        self.logs[name] = log

    def start(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        key = STATE / "secret_key"
        if not key.exists():
            old = os.umask(0o077)
            key.write_text(secrets.token_urlsafe(50) + "\n")
            os.umask(old)
        self.env.update(
            SECRET_KEY_FILE=str(key),
            SHIPMATE_STATE_DIR=str(STATE),
            DJANGO_SETTINGS_MODULE="pipeline_ui.settings",
            PYTHONUNBUFFERED="1",
        )
        # Everything make run starts listens on 127.0.0.1 (registry, engine, the demo apps
        # and their health checks), which the outbound guard refuses by default: opt in.
        self.env.setdefault("SHIPMATE_ALLOW_INTERNAL", "loopback")
        self.env.setdefault("SHIPMATE_URL", f"http://{HOST}:{PORT}")  # links in notifications
        self.start_services()
        self.manage("migrate", "--no-input", "-v0")
        self.manage("seed_demo", "--port-base", str(DEMO_PORT_BASE))
        celery = str(BIN / "celery")
        self.spawn(
            "worker", celery, "-A", "pipeline_ui", "worker", "-Q", "celery", "--loglevel=INFO",
            "--concurrency=2", "-n", NODE,
        )  # fmt: skip
        self.spawn(
            "notifier", celery, "-A", "pipeline_ui", "worker", "-Q", "notifications", "--pool=threads",
            "--concurrency=4", "--loglevel=INFO", "-n", NOTIFY_NODE,
        )  # fmt: skip
        self.spawn(
            "beat",
            celery,
            "-A",
            "pipeline_ui",
            "beat",
            "--loglevel=INFO",
            "-s",
            str(STATE / "celerybeat-schedule"),
        )
        self.spawn(
            "web", str(BIN / "uvicorn"), "pipeline_ui.asgi:application", "--host", HOST, "--port", str(PORT),
            "--no-access-log", "--timeout-graceful-shutdown", "2",
        )  # fmt: skip
        self.wait_for_web()
        say(
            f"Shipmate runs on http://{HOST}:{PORT}/  (demo logins above; also in {STATE / 'demo-passwords.txt'})"
        )
        say(f"logs: {', '.join(str(p) for p in self.logs.values())}")
        say("press Ctrl-C to stop")

    def wait_for_web(self, timeout: float = 90) -> None:
        url = f"http://{HOST}:{PORT}/login/"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise self.died("web", f"did not answer {url} within {timeout:g} s")

    # --- watch -------------------------------------------------------------------
    def died(self, name: str, how: str) -> SystemExit:
        print(
            f"\nshipmate: the {name} process {how}. Last {TAIL_LINES} lines of {self.logs[name]}:", flush=True
        )
        sys.stdout.write(tail(self.logs[name]))
        sys.stdout.flush()
        return SystemExit(1)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise self.died(name, f"exited with code {code}")

    def watch(self) -> None:
        while True:  # until a signal raises
            self.check_alive()
            time.sleep(0.2)

    # --- stop --------------------------------------------------------------------
    def terminate(self, name: str) -> None:
        """SIGTERM to the process itself: a prefork worker's children must not get it,
        or they die mid-task instead of letting the worker cancel and finish the run."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait_exit(self, names: list[str], seconds: float) -> list[str]:
        """Wait up to `seconds` for `names` to exit; return those still running."""
        deadline = time.monotonic() + seconds
        left = names
        while left and time.monotonic() < deadline:
            left = [n for n in left if self.procs[n].poll() is None]
            if left:
                time.sleep(0.1)
        return [n for n in left if self.procs[n].poll() is None]

    def kill_group(self, name: str) -> None:
        """SIGKILL the process group: a prefork worker's children go with it."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self) -> None:
        self.stopping = True
        start = time.monotonic()
        running = [n for n, p in self.procs.items() if p.poll() is None]
        if running:
            say(f"stopping {', '.join(running)} (Ctrl-C again to stop at once)…")
        for name in ("web", "beat", "notifier", "worker"):
            self.terminate(name)
        # A notification cut off here is delivered again later (acks_late): no grace needed.
        for name in self.wait_exit([n for n in ("web", "beat", "notifier") if n in self.procs], 5):
            self.kill_group(name)
        if "worker" in running:
            if self.wait_exit(["worker"], GRACE):
                say(f"the worker did not stop within {GRACE:g} s; killing it")
                self.kill_group("worker")
                self.settle()
            else:
                say(f"the worker stopped after {since(start)}")
        self.stop_services()
        say(f"services stopped after {since(start)}")

    def hard_stop(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping everything now")
        for name in self.procs:
            if self.procs[name].poll() is None:
                self.kill_group(name)
        self.stop_services()

    def settle(self) -> None:
        """Runs the worker left behind are settled with a sentence, not left running."""
        try:
            self.manage("shipmate", "settle-stopped", "--worker", WORKER)
        except (subprocess.CalledProcessError, OSError) as exc:
            say(f"could not settle interrupted deployments ({exc}); the next start does it")

    def stop_services(self) -> None:
        if self.services_started:
            self.services_started = False
            subprocess.run(
                [str(ROOT / "scripts" / "services.sh"), "stop", "run"], env=self.env, start_new_session=True
            )


def main() -> int:
    os.chdir(ROOT)
    sup = Supervisor()
    signal.signal(signal.SIGINT, sup.on_signal)
    signal.signal(signal.SIGTERM, sup.on_signal)
    code = 0
    try:
        try:
            sup.start()
            sup.watch()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except subprocess.CalledProcessError as exc:
            say(f"{' '.join(map(str, exc.cmd[1:3]))} failed with code {exc.returncode}")
            code = 1
        except KeyboardInterrupt:
            pass
        sup.stop()
    except HardStop:
        sup.hard_stop()
        code = 130
    say("stopped" if code == 0 else f"stopped (exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
