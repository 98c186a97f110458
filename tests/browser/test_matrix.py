"""The dashboard matrix in Chromium: two applications deploy side by side, both cells
update on the open page as they change (pushed), a cell opens its placement page, and a promotion is confirmed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from deployments import services
from deployments.demo_app import create_hello_repo
from deployments.models import Deployment, Repository, Status, Trigger
from tests.conftest import place
from tests.live import free_port

pytestmark = pytest.mark.browser


def test_two_applications_update_live_on_the_matrix_and_a_cell_promotes(
    celery_worker: Any,
    logged_in_page: Callable[[User], Page],
    dev: User,
    repository: Repository,
    make_environment: Callable[..., Any],
    tmp_path: Path,
) -> None:
    dev_env, stage = make_environment("dev"), make_environment("stage", order=20)
    path = create_hello_repo(tmp_path / "hello")
    hello = Repository.objects.create(
        name="hello", git_url=str(path), test_command="sh /app/test.sh", image_name="shipmate-test/hello"
    )
    hello_port = free_port()
    place(hello, dev_env, target_settings={"port": hello_port}, public_url=f"http://127.0.0.1:{hello_port}/")
    place(hello, stage, target_settings={"port": free_port()})
    page = logged_in_page(dev)
    page.goto("/")
    expect(page.locator('[data-cell="demo/dev"]')).to_contain_text("nothing yet")

    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main")

    # The open page is told about each change (feed.py over SSE) and re-renders: no
    # reload by the test, and well before its fallback refresh (every 60 s) would run.
    for app in ("demo", "hello"):
        # Running (a status badge) or waiting (the queue tag), seconds after the request.
        expect(page.locator(f'[data-cell="{app}/dev"] :is(.badge, .tag)').first).to_be_visible(timeout=10_000)
    for app in ("demo", "hello"):
        expect(page.locator(f'[data-cell="{app}/dev"] code.sha')).to_have_count(1, timeout=45_000)
    expect(page.locator('[data-cell="hello/dev"] a', has_text="Open app")).to_have_attribute(
        "href", f"http://127.0.0.1:{hello_port}/"
    )
    shipped = Deployment.objects.get(repository=hello, environment=dev_env)
    assert shipped.status == Status.SUCCEEDED, shipped.error

    page.locator('[data-cell="hello/stage"] a.cell-link').click()
    page.wait_for_url("**/apps/hello/stage/")
    page.locator("#promote summary").click()
    expect(page.locator("#promote")).to_contain_text(shipped.commit_sha)
    expect(page.locator("#promote")).to_contain_text(shipped.image_digest)
    page.get_by_role("button", name=f"Promote {shipped.short_sha} to stage").click()
    page.wait_for_url("**/deployments/*/")
    # A reused image ships in about a second, often before the page has subscribed: the
    # page must still end on the final status.
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=90_000)
    promoted = Deployment.objects.get(repository=hello, environment=stage, trigger=Trigger.PROMOTION)
    assert promoted.image_digest == shipped.image_digest
