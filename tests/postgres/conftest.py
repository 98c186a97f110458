"""The PostgreSQL run (`DATABASE_URL=$TEST_POSTGRES_URL pytest -m postgres`): concurrency
that SQLite's single writer would hide. Run on anything else, these tests fail loudly
instead of passing for the wrong reason."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    # Per process, like the SQLite file in tests/settings.py: pytest-django drops an
    # existing test database without asking, so two runs must not share one name.
    test = settings.DATABASES["default"].setdefault("TEST", {})
    if connection.vendor == "postgresql" and not test.get("NAME"):
        test["NAME"] = f"test_shipmate_{os.getpid()}"


@pytest.fixture(autouse=True)
def _require_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.fail(
            f"tests/postgres needs PostgreSQL but the database is {connection.vendor}: "
            "run them as `DATABASE_URL=$TEST_POSTGRES_URL pytest -m postgres`",
            pytrace=False,
        )


@pytest.fixture
def high_ids(transactional_db: Any) -> None:
    """Start deployment ids far from 1, so live-log streams in the shared Redis (keyed
    by id) do not collide with a SQLite run of the suite at the same time."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('deployments_deployment', 'id'), %s)",
            [random.randint(10**8, 10**9)],
        )


QUEUE_PREFIX = f"shipmate-test-{os.getpid()}-"


@pytest.fixture
def private_queue() -> Iterator[str]:
    """Route this test's task messages to a queue of its own on the real broker, so a
    worker of another test run on the shared Redis cannot take them (or purge them)."""
    from pipeline_ui.celery import app

    name = f"{QUEUE_PREFIX}{random.randrange(10**6)}"
    old = app.conf.task_default_queue
    app.conf.task_default_queue = name
    _forget_queues(app)
    try:
        yield name
    finally:
        app.conf.task_default_queue = old
        _forget_queues(app)


def _forget_queues(app: Any) -> None:
    # Celery caches the queue table on first use; drop it so the new default applies.
    for attr in ("queues", "default_queue", "router", "send_task_message"):
        app.amqp.__dict__.pop(attr, None)


@pytest.fixture(scope="session", autouse=True)
def _remove_private_queues() -> Iterator[None]:
    yield
    # At the end of the session, as kombu may declare a queue again after a test: the
    # queues, their exchanges (named after them) and the duplicate messages left in them.
    from pipeline_ui.celery import app

    broker = redis.Redis.from_url(app.conf.broker_url)
    for key in broker.scan_iter(match=f"*{QUEUE_PREFIX}*"):
        broker.delete(key)
    broker.close()
