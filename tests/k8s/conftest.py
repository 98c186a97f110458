"""Fixtures for tests placed under tests/k8s/; other folders build their own from the harness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.k8s.harness import FakeCluster


@pytest.fixture(scope="session")
def fake_cluster() -> Iterator[FakeCluster]:
    """kmock over HTTP on 127.0.0.1 plus the controller emulator, shared by the session."""
    with FakeCluster.running() as cluster:
        yield cluster
