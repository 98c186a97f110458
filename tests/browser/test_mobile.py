"""Every page on a phone (390 px wide): the page itself never scrolls sideways; wide
tables scroll inside themselves and the navigation folds into a menu."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from deployments import services
from deployments.models import Deployment, Environment, FreezeWindow, LogLine, Repository, Stage, Status
from deployments.models.deployment import STAGE_NAMES
from deployments.notifications.models import Attempt, Channel, Delivery, Subscription

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DIGEST = "127.0.0.1:5001/shipmate-test/a-rather-long-application-name@sha256:" + "7" * 64


def _history(repository: Repository, environment: Environment, user: User) -> Deployment:
    """A finished run with everything a page shows: long digest, stages, a long log line,
    an error, approvals pending elsewhere, and audit events."""
    now = timezone.now()
    done = Deployment.objects.create(
        repository=repository,
        environment=environment,
        ref="feature/a-branch-name-that-goes-on-and-on-and-on",
        requested_by=user,
        status=Status.FAILED,
        commit_sha="f" * 40,
        image_digest=DIGEST,
        error="the test stage failed: " + "x" * 300,
        created_at=now - timedelta(minutes=5),
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=4),
    )
    for position, name in enumerate(STAGE_NAMES):
        Stage.objects.create(deployment=done, name=name, position=position, status="succeeded")
    LogLine.objects.create(deployment=done, stage="build", text="y" * 500, entry_ms=1, entry_seq=0, number=1)
    services.audit(user, "deployment.click", done, reason="z" * 200)
    return done


def _channel(deployment: Deployment) -> Channel:
    """A notification channel with a delivery that took a few attempts."""
    channel = Channel.objects.create(
        name="ops-hook-with-a-long-name", kind="webhook", url="https://hooks.example.invalid/" + "p" * 120,
        events=["succeeded", "failed"],
    )  # fmt: skip
    Subscription.objects.create(channel=channel, environment=deployment.environment)
    delivery = Delivery.objects.create(channel=channel, event="failed", deployment=deployment, attempts=2)
    for number, code in ((1, 503), (2, 200)):
        Attempt.objects.create(
            delivery=delivery, number=number, started_at=timezone.now(), duration_ms=12, status_code=code,
            error="" if code == 200 else "HTTP 503: " + "upstream unavailable " * 10,
        )  # fmt: skip
    return channel


def _overflow(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_every_page_fits_a_phone_without_sideways_scrolling(
    logged_in_page: Callable[[User], Page],
    admin: User,
    repository: Repository,
    dev_env: Environment,
    live_env: Environment,
) -> None:
    FreezeWindow.objects.create(
        environment=live_env,
        reason="quarter close",
        starts_at=timezone.now() + timedelta(days=1),
        ends_at=timezone.now() + timedelta(days=2),
    )
    done = _history(repository, dev_env, admin)
    channel = _channel(done)
    urls = [
        reverse("dashboard"),
        reverse("deploy"),
        reverse("history"),
        reverse("deployment_detail", args=[done.pk]),
        reverse("approvals"),
        reverse("audit"),
        reverse("insights"),
        reverse("environment_detail", args=[dev_env.name]),
        reverse("environment_detail", args=[live_env.name]),
        reverse("placement_detail", args=[repository.name, dev_env.name]),
        reverse("tokens"),
        reverse("manage_home"),
        reverse("manage_repository_edit", args=[repository.name]),
        reverse("manage_environment_edit", args=[live_env.name]),
        reverse("manage_users"),
        reverse("manage_placement_new"),
        reverse("manage_placement_edit", args=[repository.name, live_env.name]),
        reverse("notification_channels"),
        reverse("notification_channel_new"),
        reverse("notification_channel", args=[channel.pk]),
        reverse("notification_channel_edit", args=[channel.pk]),
    ]
    page = logged_in_page(admin)
    page.set_viewport_size(PHONE)
    wide: dict[str, int] = {}
    for url in urls:
        response = page.goto(url)
        assert response is not None and response.ok, f"{url}: {response and response.status}"
        if (overflow := _overflow(page)) > 0:
            wide[url] = overflow
    assert not wide, f"pages wider than the phone (px too wide): {wide}"


def test_the_login_page_fits_a_phone(anonymous_context: Any) -> None:
    page = anonymous_context.new_page()
    page.set_viewport_size(PHONE)
    page.goto(reverse("login"))
    expect(page.locator("input[name=username]")).to_be_visible()
    assert _overflow(page) <= 0


def test_the_navigation_folds_into_a_menu_on_a_phone(
    logged_in_page: Callable[[User], Page], admin: User, dev_env: Environment
) -> None:
    page = logged_in_page(admin)
    page.set_viewport_size(PHONE)
    page.goto(reverse("dashboard"))
    history = page.locator("nav.nav-links").get_by_role("link", name="History")
    expect(history).to_be_hidden()
    page.locator("label.nav-burger").click()
    expect(history).to_be_visible()
    history.click()
    page.wait_for_url("**/deployments/")
    # On a wide screen the links are always there.
    page.set_viewport_size({"width": 1200, "height": 800})
    expect(page.locator("nav.nav-links").get_by_role("link", name="Deploy", exact=True)).to_be_visible()
