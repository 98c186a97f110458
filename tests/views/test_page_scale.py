"""Every page needs the same number of queries at 1,000 and at 20,000 deployments.
(Speed at 100,000 on PostgreSQL is measured by bench/pages_at_scale.py, not asserted.)"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment, Repository, Status
from tests.conftest import place

pytestmark = pytest.mark.django_db

STATUSES = [Status.SUCCEEDED] * 6 + [Status.FAILED, Status.CANCELLED, Status.ROLLED_BACK]


def add_deployments(placements, user, count: int, start: int) -> None:
    now = timezone.now()
    rows = []
    for i, (repository, environment) in zip(range(start, start + count), itertools.cycle(placements)):
        at = now - timedelta(minutes=10 * (10**6 - i))
        status = STATUSES[i % len(STATUSES)]
        rows.append(
            Deployment(
                repository=repository, environment=environment, ref="main", requested_by=user, status=status,
                commit_sha=f"{i:040x}", image_digest=f"r/{repository.name}@sha256:{i:064x}",
                created_at=at, started_at=at, finished_at=at + timedelta(minutes=2),
            )
        )  # fmt: skip
    Deployment.objects.bulk_create(rows, batch_size=2000)


def pages(repository, environment, deployment) -> dict[str, str]:
    return {
        "dashboard": reverse("dashboard"),
        "history": reverse("history"),
        "history filtered": reverse("history")
        + f"?repository={repository.name}&environment={environment.name}",
        "environment": reverse("environment_detail", args=[environment.name]),
        "placement": reverse("placement_detail", args=[repository.name, environment.name]),
        "deployment": reverse("deployment_detail", args=[deployment.pk]),
        "deploy form": reverse("deploy"),
        "approvals": reverse("approvals"),
    }


def query_counts(client: Client, urls: dict[str, str]) -> dict[str, int]:
    counts = {}
    for name, url in urls.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        counts[name] = len(queries)
    return counts


def test_every_page_needs_the_same_queries_at_1000_and_20000_deployments(admin, repository, make_environment):
    envs = [make_environment(name, order=10 * i) for i, name in enumerate(("dev", "stage", "live"), 1)]
    apps = [repository] + [
        Repository.objects.create(name=f"app{i}", git_url=repository.git_url, image_name=f"t/app{i}")
        for i in range(4)
    ]
    for app in apps[1:]:
        for env in envs:
            place(app, env, target_settings={"port": 1000 + 10 * apps.index(app) + env.order // 10})
    placements = [(a, e) for a in apps for e in envs]
    client = Client()
    client.force_login(admin)

    add_deployments(placements, admin, 1000, start=0)
    newest = Deployment.objects.filter(repository=repository, environment=envs[0]).latest("created_at")
    urls = pages(repository, envs[0], newest)
    small = query_counts(client, urls)

    add_deployments(placements, admin, 19_000, start=1000)
    assert Deployment.objects.count() == 20_000
    large = query_counts(client, urls)
    assert large == small
