"""Fixtures for the pipeline stage tests: a demo git repository, the test engine and registry."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from deployments.demo_app import create_demo_repo
from deployments.pipeline.build import build_image


class Lines(list[str]):
    """A LogFn that keeps every line, for assertions."""

    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def demo_repo(tmp_path: Path) -> Path:
    return create_demo_repo(tmp_path / "demo")


@pytest.fixture(scope="session")
def registry_host() -> str:
    return os.environ.get("SHIPMATE_REGISTRY", "127.0.0.1:5001")


@pytest.fixture
def unique_repository(registry_host: str) -> str:
    return f"{registry_host}/shipmate-test/stage-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def remove_images(docker_engine: docker.DockerClient) -> Iterator[list[str]]:
    """Append image references or ids; they are removed after the test."""
    created: list[str] = []
    yield created
    for ref in created:
        try:
            docker_engine.images.remove(ref, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="session")
def demo_image(docker_engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo app built once for the test-stage tests."""
    repo = create_demo_repo(tmp_path_factory.mktemp("demo-image") / "demo")
    tag = f"shipmate-test/demo-{uuid.uuid4().hex[:10]}:latest"
    build_image(
        docker_engine,
        context_dir=repo,
        dockerfile=repo / "Dockerfile",
        tag=tag,
        labels={},
        network_mode="none",
        log=lambda line: None,
        should_stop=lambda: False,
    )
    yield tag
    docker_engine.images.remove(tag, force=True)
