"""The deployment page's pipeline timeline: bars on the run's time axis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments import selectors
from deployments.models import Deployment, Stage, Status
from deployments.models.deployment import STAGE_NAMES

pytestmark = pytest.mark.django_db


def _run(repository, env, user, *, t0, finished: bool) -> Deployment:
    d = Deployment.objects.create(
        repository=repository,
        environment=env,
        ref="main",
        requested_by=user,
        status=Status.SUCCEEDED if finished else Status.RUNNING,
        started_at=t0,
        finished_at=t0 + timedelta(seconds=10) if finished else None,
    )
    spans = {"checkout": (0, 1), "build": (1, 3), "test": (3, None if not finished else 8)}
    for position, name in enumerate(STAGE_NAMES):
        start, end = spans.get(name, (None, None))
        Stage.objects.create(
            deployment=d,
            name=name,
            position=position,
            status="succeeded" if end is not None else "running" if start is not None else "pending",
            started_at=t0 + timedelta(seconds=start) if start is not None else None,
            finished_at=t0 + timedelta(seconds=end) if end is not None else None,
        )
    return d


def test_a_running_stage_reaches_up_to_now_on_the_axis(dev, repository, dev_env):
    t0 = timezone.now() - timedelta(minutes=1)
    d = _run(repository, dev_env, dev, t0=t0, finished=False)
    timeline = selectors.deployment_timeline(d, d.stages.order_by("position"), now=t0 + timedelta(seconds=5))
    bars = {b.name: b for b in timeline.bars}
    assert timeline.end_ms is None and timeline.total == timedelta(seconds=5)
    assert (bars["checkout"].left, bars["checkout"].width) == (0.0, 20.0)
    assert (bars["build"].left, bars["build"].width) == (20.0, 40.0)
    # The test stage runs: its bar ends at "now" and it has no end of its own yet.
    assert (bars["test"].left, bars["test"].width, bars["test"].end_ms) == (60.0, 40.0, None)
    assert bars["test"].duration == timedelta(seconds=2)
    assert bars["push"].start_ms is None and bars["push"].width == 0.0


def test_a_finished_run_is_drawn_on_its_own_span(dev, repository, dev_env):
    t0 = timezone.now() - timedelta(minutes=1)
    d = _run(repository, dev_env, dev, t0=t0, finished=True)
    timeline = selectors.deployment_timeline(d, d.stages.order_by("position"), now=timezone.now())
    bars = {b.name: b for b in timeline.bars}
    assert timeline.total == timedelta(seconds=10) and timeline.end_ms == int(
        (t0 + timedelta(seconds=10)).timestamp() * 1000
    )
    assert (bars["test"].left, bars["test"].width) == (30.0, 50.0)


def test_the_page_draws_the_timeline_and_a_queued_run_has_none(dev, repository, dev_env):
    client = Client()
    client.force_login(dev)
    t0 = timezone.now() - timedelta(seconds=5)
    running = _run(repository, dev_env, dev, t0=t0, finished=False)
    html = client.get(reverse("deployment_detail", args=[running.pk])).content.decode()
    assert 'id="timeline"' in html and 'data-end=""' in html
    assert 'class="tl-bar tl-succeeded" style="left:0.000%;' in html
    # The total is measured to the response, not stuck at the moment the run started.
    assert '<dd id="duration">5.' in html
    queued = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    html = client.get(reverse("deployment_detail", args=[queued.pk])).content.decode()
    assert 'id="timeline"' not in html
