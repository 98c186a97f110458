"""Browser fixtures: Debian's Chromium driven by Playwright, against the real ASGI app
served by uvicorn in a thread of this process (so it shares the test database)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page

from tests.live import CHROMIUM, CHROMIUM_ARGS, serve_asgi

# Playwright's sync API keeps an asyncio loop running in the main thread for the rest
# of the session, which makes Django refuse ORM calls from test bodies (and from any
# test that runs after these) as "async unsafe". Nothing here is really concurrent on
# one connection: the server answers from its own threads.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # Never the Playwright-downloaded browser: nothing can be downloaded here.
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(autouse=True)
def _no_stale_log_streams() -> None:
    """Each session builds a fresh database, so deployment ids start again at 1, but
    Redis keeps the streams of earlier sessions (with a TTL): a page would replay an
    old run's lines and its `end` event. The test Redis is ours; drop them."""
    from deployments.logs import get_redis

    client = get_redis()
    stale = list(client.scan_iter(match="shipmate:log:*", count=1000))
    if stale:
        client.delete(*stale)


@pytest.fixture
def asgi_server(transactional_db: Any) -> Iterator[str]:
    """Base URL of pipeline_ui.asgi served by uvicorn. Transactional DB: the server's
    threads use their own connections, so they only see committed rows."""
    with serve_asgi() as base_url:
        yield base_url


@pytest.fixture
def anonymous_context(asgi_server: str, new_context: Callable[..., BrowserContext]) -> BrowserContext:
    # Requested after asgi_server, so it is closed (and its streams dropped) before the server stops.
    return new_context(base_url=asgi_server)


@pytest.fixture
def logged_in_page(asgi_server: str, new_context: Callable[..., BrowserContext]) -> Callable[[User], Page]:
    """logged_in_page(user) -> a page in a fresh browser context, logged in through the
    real login form and left on the page it redirects to."""

    def login(user: User) -> Page:
        page = new_context(base_url=asgi_server).new_page()
        page.goto("/login/")
        page.fill("input[name=username]", user.get_username())
        page.fill("input[name=password]", f"{user.get_username()}-pw")
        with page.expect_navigation():
            page.click("form button[type=submit]")
        if page.url.rstrip("/").endswith("/login"):
            raise AssertionError(f"login as {user} failed: {page.locator('.error').all_inner_texts()}")
        return page

    return login
