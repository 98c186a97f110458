"""What every benchmark needs: Django on its own SQLite file and Redis database, users
and environments made like the tests make them, the ASGI app under uvicorn, a logged-in
session, a real Celery worker, and the SSE reader process.

Call `setup_django()` before importing anything that touches Django models.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
# Not 0: the test suites share the test Redis, purge its Celery queue and delete its
# log streams. A database of our own keeps their runs and ours from eating each other's.
BENCH_REDIS_DB = 13
# Container names are shipmate-<repository>-<environment>; "bench-" keeps ours apart.
BENCH_PREFIX = "bench"


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def setup_django(name: str) -> Path:
    """Configure and start Django on a fresh, migrated SQLite file; returns the scratch dir
    (removed at exit)."""
    for required in ("REDIS_URL", "DOCKER_HOST", "SHIPMATE_REGISTRY"):
        if not os.environ.get(required):
            raise SystemExit(f"{required} is not set: run `make bench`, or source .state/test/services.env")
    scratch = Path(tempfile.mkdtemp(prefix=f"shipmate-bench-{name}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    redis_url = _with_db(os.environ["REDIS_URL"], BENCH_REDIS_DB)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"sqlite:///{scratch}/bench.sqlite3",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        SHIPMATE_WORK_DIR=str(scratch / "work"),
    )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)
    drop_log_streams()
    return scratch


def drop_log_streams() -> None:
    """Deployment ids restart at 1 in each fresh database; old streams must not be replayed."""
    from deployments.logs import get_redis

    client = get_redis()
    stale = list(client.scan_iter(match="shipmate:log:*", count=1000))
    if stale:
        client.delete(*stale)


# --- data, made the way tests/conftest.py makes it ----------------------------------


def make_user(name: str, role: str | None) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(name, password=f"{name}-pw")
    if role is not None:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def streaming_deployment(name: str) -> Any:
    """A running deployment with no task behind it: its stream stays open for as long as
    a benchmark writes. Makes (once) the user `dev`, the environment `dev` and a repository."""
    from django.contrib.auth.models import User

    from deployments import permissions
    from deployments.models import Deployment, Environment, Repository, Status

    dev = User.objects.filter(username="dev").first() or make_user("dev", permissions.DEVELOPERS)
    env = Environment.objects.filter(name="dev").first() or make_environment("dev")
    repository, _ = Repository.objects.get_or_create(
        name=name, defaults={"git_url": "/nonexistent", "image_name": f"bench/{name}"}
    )
    return Deployment.objects.create(
        repository=repository, environment=env, ref="main", requested_by=dev, status=Status.RUNNING
    )


def make_environment(name: str = "dev", *, order: int = 10, **target_settings: Any) -> Any:
    from django.contrib.auth.models import Group

    from deployments import permissions
    from deployments.models import Environment

    groups = {role: Group.objects.get_or_create(name=role)[0] for role in permissions.ROLE_GROUPS}
    settings = {"port": free_port(), "network_mode": "host", "health_path": "/healthz", "health_timeout": 15}
    settings.update(target_settings)
    env = Environment.objects.create(name=name, order=order, target_kind="docker", target_settings=settings)
    env.deploy_groups.set(groups.values())
    env.approve_groups.set([groups[permissions.RELEASE_MANAGERS], groups[permissions.ADMINS]])
    return env


def make_repository(name: str, git_url: str) -> Any:
    from deployments.models import Repository

    return Repository.objects.create(
        name=name, git_url=git_url, test_command="sh /app/test.sh", image_name=f"shipmate-bench/{name}"
    )


def fresh_demo_repo(path: Path) -> Path:
    """The demo repository with a unique label at the top of its Dockerfile on main, so no
    build layer is found in the engine's cache: every build is a cold one."""
    from deployments.demo_app import DOCKERFILE, add_commit, create_demo_repo

    create_demo_repo(path)
    nonce = f"LABEL bench.nonce={uuid.uuid4().hex}\n"
    dockerfile = DOCKERFILE.format(port_env="PORT").replace("FROM scratch\n", "FROM scratch\n" + nonce, 1)
    add_commit(path, "Build from scratch (benchmark)", {"Dockerfile": dockerfile})
    return path


def remove_bench_containers() -> None:
    import docker

    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"name": f"shipmate-{BENCH_PREFIX}"}):
            container.remove(force=True)
    finally:
        client.close()


def remove_bench_images() -> None:
    """Images our runs built (tests and other runs never use the shipmate-bench names)."""
    import docker
    from docker.errors import APIError

    client = docker.from_env()
    try:
        for image in client.images.list():
            if any("/shipmate-bench/" in tag for tag in image.tags):
                try:
                    client.images.remove(image.id, force=True)
                except APIError:
                    pass  # gone meanwhile, or a running container still uses it: leave it
    finally:
        client.close()


# --- the web server and a session -------------------------------------------------


def login_cookie(base_url: str, username: str) -> str:
    """Logs in through the real login form; returns a Cookie header for the session."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=10) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if token is None:
            raise RuntimeError("no CSRF token on the login page")
        response = client.post(
            "/login/",
            data={"username": username, "password": f"{username}-pw", "csrfmiddlewaretoken": token[1]},
            headers={"Referer": f"{base_url}/login/"},
        )
        if response.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"login as {username} failed ({response.status_code})")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


# --- the worker ---------------------------------------------------------------------


@contextmanager
def celery_worker() -> Iterator[Any]:
    """A real worker thread on the (bench) Redis broker, as tests/conftest.py starts it."""
    from celery.contrib.testing.worker import start_worker

    from pipeline_ui.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker


def wait_finished(deployment: Any, timeout: float = 120) -> Any:
    from deployments.models.deployment import FINISHED

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.status in FINISHED:
            return deployment
        time.sleep(0.05)
    raise RuntimeError(f"deployment #{deployment.pk} still {deployment.status} after {timeout} s")


# --- SSE readers in their own process ------------------------------------------------


class SseReaders:
    """bench/sse_client.py in a subprocess: `clients` streams on `url`, opened before `start`
    returns; `result()` waits for the end marker and returns their JSON report."""

    def __init__(self, url: str, cookie: str, *, clients: int = 1, timeout: float = 60) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.sse_client",
                url,
                cookie,
                "--clients",
                str(clients),
                "--timeout",
                str(timeout),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.process.kill()
            raise RuntimeError(f"SSE readers did not start: {line!r}")

    def result(self) -> dict[str, Any]:
        try:
            out, _ = self.process.communicate(timeout=self.timeout + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return json.loads(out.strip().splitlines()[-1])


def paced(count: int, interval: float, write: Callable[[int], None]) -> None:
    """Calls write(0..count-1) on a fixed schedule (absolute deadlines, so no drift)."""
    start = time.monotonic()
    for i in range(count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        write(i)


def ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"
