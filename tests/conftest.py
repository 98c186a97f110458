"""Fixtures shared by the Django-level tests: users in their groups, the demo
repository, environments on the test Docker engine, and a real Celery worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.contrib.auth.models import Group, User

from deployments import permissions
from deployments.demo_app import create_demo_repo
from deployments.models import Environment, Placement, Repository
from tests.live import free_port

for required in ("REDIS_URL", "DOCKER_HOST", "SHIPMATE_REGISTRY"):
    if not os.environ.get(required):
        raise RuntimeError(f"{required} is not set: run `make test`, or source .state/test/services.env")


@pytest.fixture(scope="session")
def demo_repo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_demo_repo(tmp_path_factory.mktemp("git") / "demo")


@pytest.fixture
def groups(db: Any) -> dict[str, Group]:
    # Transactional tests flush the tables, groups from the data migration included.
    return {name: Group.objects.get_or_create(name=name)[0] for name in permissions.ROLE_GROUPS}


def _user(name: str, group: Group | None) -> User:
    user = User.objects.create_user(name, password=f"{name}-pw")
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def dev(groups: dict[str, Group]) -> User:
    return _user("dev", groups[permissions.DEVELOPERS])


@pytest.fixture
def dev2(groups: dict[str, Group]) -> User:
    return _user("dev2", groups[permissions.DEVELOPERS])


@pytest.fixture
def release(groups: dict[str, Group]) -> User:
    return _user("release", groups[permissions.RELEASE_MANAGERS])


@pytest.fixture
def release2(groups: dict[str, Group]) -> User:
    return _user("release2", groups[permissions.RELEASE_MANAGERS])


@pytest.fixture
def admin(groups: dict[str, Group]) -> User:
    return _user("admin", groups[permissions.ADMINS])


@pytest.fixture
def outsider(db: Any) -> User:
    return _user("outsider", None)


def place(repository: Repository, *environments: Environment, **fields: Any) -> list[Placement]:
    """Place `repository` in `environments` (all of them when none are named)."""
    targets = environments or tuple(Environment.objects.all())
    return [
        Placement.objects.update_or_create(repository=repository, environment=env, defaults=fields)[0]
        for env in targets
    ]


@pytest.fixture
def repository(db: Any, demo_repo_path: Path) -> Repository:
    repo = Repository.objects.create(
        name="demo",
        git_url=str(demo_repo_path),
        test_command="sh /app/test.sh",
        image_name="shipmate-test/demo",
    )
    place(repo)  # in the environments made before it; make_environment places it in later ones
    return repo


@pytest.fixture
def make_environment(groups: dict[str, Group]) -> Iterator[Callable[..., Environment]]:
    names: list[str] = []

    def make(name: str = "dev", *, order: int = 10, approval: bool = False, **fields: Any) -> Environment:
        port = fields.pop("port", None) or free_port()
        settings = {"port": port, "network_mode": "host", "health_path": "/healthz", "health_timeout": 15}
        settings.update(fields.pop("target_settings", {}))
        env = Environment.objects.create(
            name=name,
            order=order,
            target_kind=fields.pop("target_kind", "docker"),
            target_settings=settings,
            requires_approval=approval,
            **fields,
        )
        env.deploy_groups.set(groups.values())
        env.approve_groups.set([groups[permissions.RELEASE_MANAGERS], groups[permissions.ADMINS]])
        for repository in Repository.objects.all():
            place(repository, env)
        names.append(name)
        return env

    yield make
    # Containers are named shipmate-<repository>-<environment>: a later test that
    # reuses the environment name must start from an empty engine.
    if names:
        client = docker.from_env()
        for container in client.containers.list(all=True, filters={"label": "shipmate.managed=true"}):
            if any(container.name.endswith((f"-{n}", f"-{n}-previous")) for n in names):
                container.remove(force=True)
        client.close()


@pytest.fixture
def dev_env(make_environment: Callable[..., Environment]) -> Environment:
    return make_environment("dev")


@pytest.fixture
def live_env(make_environment: Callable[..., Environment]) -> Environment:
    env = make_environment("live", order=30, approval=True)
    env.deploy_groups.set(Group.objects.all())
    return env


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    # The test engine is ours alone: leave no Shipmate container behind.
    for container in client.containers.list(all=True, filters={"label": "shipmate.managed=true"}):
        container.remove(force=True)
    client.close()


@pytest.fixture
def celery_worker(transactional_db: Any, docker_engine: docker.DockerClient) -> Iterator[Any]:
    """A real worker thread consuming from the real Redis broker. (No ping check:
    it needs a result backend, and Shipmate keeps none; start_worker waits for
    the consumer to be ready anyway.)"""
    from celery.contrib.testing.worker import start_worker

    from pipeline_ui.celery import app

    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker


@pytest.fixture(scope="session")
def fake_cluster() -> Iterator[Any]:
    """kmock over HTTP on 127.0.0.1 plus the controller emulator (tests/k8s/harness.py)."""
    from tests.k8s.harness import FakeCluster

    with FakeCluster.running() as cluster:
        yield cluster


def log_deployment(name: str) -> Iterator[Any]:
    """A deployment to write logs for, with a random pk (its stream stays apart from other
    runs sharing the Redis server) and no stream left before or after. For fixtures."""
    import random

    from deployments.logs import get_redis, stream_key
    from deployments.models import Deployment

    repo = Repository.objects.create(
        name=f"{name}-app", git_url="https://git.invalid/a.git", image_name=f"{name}/a"
    )
    env = Environment.objects.create(name=f"{name}-env")
    dep = Deployment.objects.create(
        pk=random.randint(10**8, 10**9), repository=repo, environment=env, ref="main"
    )
    get_redis().delete(stream_key(dep.pk))
    yield dep
    get_redis().delete(stream_key(dep.pk))
