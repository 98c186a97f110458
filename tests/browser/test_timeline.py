"""The pipeline timeline grows in the browser while a real run goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Page, expect

from deployments import services
from deployments.models import Environment, Repository

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEST_BAR = ".tl-row[data-stage=test]"


def _state(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => { const row = document.querySelector('.tl-row[data-stage=test]');
                   return { status: row.dataset.status,
                            width: row.querySelector('.tl-bar').getBoundingClientRect().width,
                            dur: row.querySelector('.tl-dur').textContent,
                            total: document.getElementById('duration').textContent }; }"""
    )


def test_the_timeline_and_the_total_grow_while_the_test_stage_runs(
    celery_worker: Any,
    logged_in_page: Callable[[User], Page],
    dev: User,
    repository: Repository,
    dev_env: Environment,
) -> None:
    repository.test_command = "sh -c 'sh /app/test.sh; sleep 4'"
    repository.save(update_fields=["test_command"])
    page = logged_in_page(dev)
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    page.goto(reverse("deployment_detail", args=[deployment.pk]))
    page.wait_for_function(
        "document.querySelector('.tl-row[data-stage=test]')?.dataset.status === 'running'", timeout=60_000
    )
    first = _state(page)
    # Without a reload and with no new stage event: the running bar, its duration and the total move.
    page.wait_for_function(
        """([w, dur, total]) => { const row = document.querySelector('.tl-row[data-stage=test]');
             return row.dataset.status === 'running'
               && row.querySelector('.tl-bar').getBoundingClientRect().width > w + 5
               && row.querySelector('.tl-dur').textContent !== dur
               && document.getElementById('duration').textContent !== total; }""",
        arg=[first["width"], first["dur"], first["total"]],
        timeout=3_000,
    )
    assert _state(page)["status"] == "running"
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator("#timeline")).not_to_have_attribute("data-end", "")
    test_seconds = float(page.locator(f"{TEST_BAR} .tl-dur").inner_text().split()[0])
    assert test_seconds >= 4.0
