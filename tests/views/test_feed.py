"""The placement feed the matrix page follows: status changes reach the viewers of the
environment, and nobody else, over real Redis."""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client

from deployments import feed, services
from deployments.logs import get_redis
from deployments.models import Deployment, Status
from deployments.services import lifecycle
from tests.live import run_coroutine


@pytest.fixture(autouse=True)
def _fresh_feed(settings, monkeypatch):
    monkeypatch.setattr(feed, "KEEPALIVE_MS", 200)
    get_redis().delete(feed.FEED_KEY)


async def _next_events(stream, n: int) -> list[str]:
    return [await asyncio.wait_for(stream.__anext__(), timeout=5) for _ in range(n)]


@pytest.mark.django_db(transaction=True)
def test_a_status_change_reaches_viewers_of_its_environment_only(dev, repository, dev_env, live_env):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )

    async def follow(environment_ids: list[int]) -> list[str]:
        stream = feed.changes(environment_ids)
        try:
            (ready,) = await _next_events(stream, 1)
            assert "event: ready" in ready
            # The worker claims the deployment: a status transition, published on commit.
            await asyncio.to_thread(lifecycle.deployment_claim, deployment_id=deployment.pk, worker="w")
            return await _next_events(stream, 1)
        finally:
            await stream.aclose()

    (event,) = run_coroutine(follow([dev_env.pk]))
    assert event == f"event: changed\ndata: {dev_env.pk}:{repository.pk}\n\n"
    Deployment.objects.filter(pk=deployment.pk).update(status=Status.QUEUED)
    (event,) = run_coroutine(follow([live_env.pk]))  # a viewer of another environment
    assert event == ": keepalive\n\n"


@pytest.mark.django_db(transaction=True)
def test_a_lock_and_a_request_are_changes_too(dev, release, repository, dev_env):
    services.environment_lock(user=release, environment=dev_env, reason="incident")
    services.environment_unlock(user=release, environment=dev_env)
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    entries = get_redis().xrange(feed.FEED_KEY)
    assert [fields for _id, fields in entries] == [
        {"environment": str(dev_env.pk), "repository": ""},
        {"environment": str(dev_env.pk), "repository": ""},
        {"environment": str(dev_env.pk), "repository": str(repository.pk)},
    ]


@pytest.mark.django_db
def test_the_feed_needs_a_login():
    assert Client().get("/events/placements").status_code == 403
