"""The Insights page in Chromium: the charts are drawn (SVG bars for the days with data),
each bar's value is the table's, the range links work, and a status badge renders as an
image on the placement page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from deployments.models import Deployment, Repository, Stage, StageStatus, Status

pytestmark = pytest.mark.browser


def add_week(repository: Repository, env: Any) -> None:
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    runs = [
        (Status.SUCCEEDED, 4 * 24 - 8, 4 * 24 - 6),  # finished 4 days ago at 08:00, lead 2 h
        (Status.FAILED, 3 * 24 - 9, None),
        (Status.SUCCEEDED, 3 * 24 - 12, 3 * 24 - 10),  # restores after 3 h, lead 2 h
        (Status.SUCCEEDED, 3 * 24 - 14, 3 * 24 - 8),  # lead 6 h
    ]
    for status, hours_ago, committed_hours_ago in runs:
        finished = today - timedelta(hours=hours_ago)
        d = Deployment.objects.create(
            repository=repository, environment=env, ref="main", status=status, finished_at=finished,
            created_at=finished - timedelta(minutes=5),
            committed_at=None if committed_hours_ago is None else today - timedelta(hours=committed_hours_ago),
        )  # fmt: skip
        if status == Status.FAILED:
            Stage.objects.create(
                deployment=d, name="rollout", position=5, status=StageStatus.FAILED, started_at=finished
            )


def chart_points(page: Page, key: str) -> dict[str, str]:
    bars = page.locator(f'svg.chart[data-metric="{key}"] rect.point')
    return {
        bar.get_attribute("data-bucket") or "": bar.get_attribute("data-value") or "" for bar in bars.all()
    }


def table_values(page: Page, key: str) -> dict[str, str]:
    rows = page.locator(f'table[data-metric="{key}"] tbody tr')
    found = {}
    for row in rows.all():
        label, value = row.locator("td").all_inner_texts()
        if value != "—":
            found[label] = value
    return found


def test_insights_draws_its_charts_and_the_table_matches_them(
    logged_in_page: Callable[[User], Page], admin: User, repository: Repository, make_environment: Any
) -> None:
    live = make_environment("live", order=30)
    add_week(repository, live)
    page = logged_in_page(admin)

    page.get_by_role("link", name="Insights").click()
    page.wait_for_url("**/insights/")
    page.get_by_role("link", name="7 days").click()
    page.wait_for_url("**days=7")

    charts = page.locator("svg.chart")
    expect(charts).to_have_count(4)
    expect(page.get_by_role("img", name="Lead time for changes (hours, median), by day")).to_be_visible()
    assert charts.first.bounding_box()["height"] > 50  # drawn, not collapsed
    # The numbers are folded under each chart; open them as a reader would.
    for numbers in page.locator("details.numbers > summary").all():
        numbers.click()
    for key in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"):
        points = chart_points(page, key)
        assert points, key
        assert points == table_values(page, key), key
    day = lambda n: (timezone.localdate() - timedelta(days=n)).isoformat()  # noqa: E731
    assert chart_points(page, "deployment_frequency")[day(3)] == "2"
    assert chart_points(page, "lead_time") == {day(4): "2", day(3): "4"}
    assert chart_points(page, "time_to_restore") == {day(3): "3"}
    expect(page.locator("#metric-change_failure_rate .band")).to_have_text("Low")
    # A bar's title is its tooltip and what a screen reader reads.
    assert page.locator('svg.chart[data-metric="lead_time"] rect.point title').first.text_content() == (
        f"{day(4)}: 2"
    )


def test_placement_page_shows_its_badge_as_an_image(
    logged_in_page: Callable[[User], Page], dev: User, repository: Repository, make_environment: Any
) -> None:
    live = make_environment("live", order=30)
    Deployment.objects.create(
        repository=repository, environment=live, ref="v1.4.2",
        status=Status.SUCCEEDED, finished_at=timezone.now(),
    )  # fmt: skip
    page = logged_in_page(dev)

    page.goto("/apps/demo/live/")

    image = page.locator("#badge img")
    expect(image).to_be_visible()
    width = page.evaluate("img => img.naturalWidth", image.element_handle())
    assert width > 100  # the SVG loaded and has its size
    expect(page.locator("#badge")).to_contain_text("![demo in live](http://")
