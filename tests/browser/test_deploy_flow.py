"""A developer deploys the demo through the browser and watches the log arrive live:
Chromium, the real ASGI server, a real Celery worker, Docker engine and registry."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, Request, expect

from deployments.models import Deployment, Environment, LogLine, Repository, Stage, Status

pytestmark = pytest.mark.browser

# Installed in every document before its own scripts run. It records what the live log
# does after the page has loaded, so the test can tell pushed lines from rendered ones.
WATCH_LOG = """
window.__shipmate = {
  docId: Math.random(), initialLines: null, loadedAt: null, appended: 0,
  firstLineAt: null, statusAtFirstLine: null, succeededAt: null, statusAtBuildSucceeded: null,
};
document.addEventListener("DOMContentLoaded", function () {
  var s = window.__shipmate, log = document.getElementById("log");
  if (!log) return;
  s.loadedAt = Date.now();
  s.initialLines = log.childElementCount;
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      r.addedNodes.forEach(function (n) {
        if (n.nodeType !== 1) return;
        s.appended++;
        if (s.firstLineAt === null) {
          s.firstLineAt = Date.now();
          s.statusAtFirstLine = document.getElementById("status").textContent.trim();
        }
      });
    });
  }).observe(log, {childList: true});
  new MutationObserver(function () {
    var st = document.getElementById("status"), build = document.querySelector("li#stage-build .badge");
    if (s.succeededAt === null && st && st.textContent.trim() === "Succeeded") s.succeededAt = Date.now();
    if (s.statusAtBuildSucceeded === null && build && build.textContent.trim() === "Succeeded") {
      s.statusAtBuildSucceeded = st.textContent.trim();
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
});
"""
DEPLOYMENT_URL = re.compile(r"/deployments/(\d+)/$")
BUILD_STAGES = ["checkout", "build", "test", "push", "rollout"]


def _head(repo: Path, ref: str = "main") -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


def _log_texts(page: Page) -> list[str]:
    return page.eval_on_selector_all("#log .line", "lines => lines.map(l => l.textContent)")


def _watch_event_streams(page: Page) -> list[str]:
    urls: list[str] = []

    def on_request(request: Request) -> None:
        if "/events" in request.url:
            urls.append(request.url)

    page.on("request", on_request)
    return urls


@pytest.mark.django_db(transaction=True)
def test_developer_deploys_demo_to_dev_and_watches_it_live(
    celery_worker: Any,
    logged_in_page: Callable[[User], Page],
    dev: User,
    repository: Repository,
    dev_env: Environment,
    demo_repo_path: Path,
) -> None:
    # Two seconds inside the test stage keep the run going well after the first lines,
    # so "live" cannot be confused with "rendered at the end".
    repository.test_command = "sh -c 'sh /app/test.sh; sleep 2'"
    repository.save(update_fields=["test_command"])
    page = logged_in_page(dev)
    page.context.add_init_script(WATCH_LOG)
    streams = _watch_event_streams(page)

    page.get_by_role("link", name="Deploy", exact=True).click()
    page.wait_for_url("**/deploy/")
    page.select_option("#id_repository", label="demo")
    page.fill("#id_ref", "main")
    page.select_option("#id_environment", label="dev")
    clicked_at = time.time() * 1000
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.wait_for_url(DEPLOYMENT_URL)
    pk = int(DEPLOYMENT_URL.search(page.url).group(1))
    doc_id = page.evaluate("window.__shipmate.docId")
    queued_note = page.locator(".messages li", has_text=f"Deployment #{pk} queued.")

    page.wait_for_function(
        "document.getElementById('log').childElementCount > 0 && window.__shipmate.appended > 0",
        timeout=30_000,
    )
    watched = page.evaluate("window.__shipmate")
    assert watched["statusAtFirstLine"] in ("Queued", "Running"), "the first pushed line only came at the end"

    expect(page.locator("#status")).to_have_text("Succeeded", timeout=90_000)
    # The "queued" note went once the run moved on; it does not contradict the status.
    expect(queued_note).to_have_count(0)
    deployment = Deployment.objects.get(pk=pk)
    assert deployment.status == Status.SUCCEEDED, deployment.error
    for name in BUILD_STAGES:
        expect(page.locator(f"li#stage-{name} .badge")).to_have_text("Succeeded")
    expect(page.locator("#commit-sha")).to_have_text(_head(demo_repo_path))
    assert deployment.image_digest.startswith(f"{settings.REGISTRY}/shipmate-test/demo@sha256:")
    expect(page.locator("#image-digest")).to_have_text(deployment.image_digest)
    served = urllib.request.urlopen(f"http://127.0.0.1:{dev_env.target_settings['port']}/", timeout=5).read()
    assert b"Hello from Shipmate demo" in served

    # Pushed, not reloaded: the same document the whole time, lines appended to it
    # after it loaded, over the event stream it opened.
    watched = page.evaluate("window.__shipmate")
    assert watched["docId"] == doc_id
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert watched["appended"] >= 1
    # Stage badges follow their own events too, not only the end-of-run summary reload.
    assert watched["statusAtBuildSucceeded"] == "Running", (
        "the build badge only changed with the final status"
    )
    assert any(f"/deployments/{pk}/events" in url for url in streams), streams
    # Every stored line exactly once, in order: rendered ones plus pushed ones, no gap, no repeat.
    expected = list(LogLine.objects.filter(deployment_id=pk).values_list("text", flat=True))
    page.wait_for_function(
        f"document.querySelectorAll('#log .line').length >= {len(expected)}", timeout=10_000
    )
    assert _log_texts(page) == expected
    assert "all demo tests passed" in expected

    first_line = watched["firstLineAt"] if not watched["initialLines"] else watched["loadedAt"]
    timings = {
        "click_to_first_log_line_ms": round(first_line - clicked_at),
        "click_to_succeeded_ms": round(watched["succeededAt"] - clicked_at),
        "server_created_to_finished_ms": round(
            (deployment.finished_at - deployment.created_at).total_seconds() * 1000
        )
        if deployment.finished_at
        else None,
        "lines_rendered_with_page": watched["initialLines"],
        "lines_pushed_live": watched["appended"],
        "test_command": repository.test_command,
    }
    print(f"\nbrowser timings: {json.dumps(timings)}")
    out = Path(settings.STATE_DIR) / "browser-timings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(timings, indent=2) + "\n")


def _finished_deployment(
    dev: User, repository: Repository, environment: Environment, lines: list[str]
) -> Deployment:
    deployment = Deployment.objects.create(
        repository=repository,
        environment=environment,
        ref="main",
        requested_by=dev,
        status=Status.SUCCEEDED,
        commit_sha="a" * 40,
        finished_at=timezone.now(),
    )
    Stage.objects.bulk_create(
        Stage(deployment=deployment, name=name, position=i, status="succeeded")
        for i, name in enumerate(BUILD_STAGES)
    )
    base_ms = int(time.time() * 1000)
    LogLine.objects.bulk_create(
        LogLine(deployment=deployment, entry_ms=base_ms + i // 3, entry_seq=i % 3, stage="build", text=text)
        for i, text in enumerate(lines)
    )
    return deployment


@pytest.mark.django_db(transaction=True)
def test_finished_deployment_page_shows_the_whole_log_from_the_database_without_a_stream(
    logged_in_page: Callable[[User], Page], dev: User, repository: Repository, dev_env: Environment
) -> None:
    lines = [f"step {i}: done" for i in range(40)] + ["<b>not bold</b> & 'quoted'", "last line"]
    deployment = _finished_deployment(dev, repository, dev_env, lines)
    page = logged_in_page(dev)
    streams = _watch_event_streams(page)

    page.goto(f"/deployments/{deployment.pk}/")
    expect(page.locator("#status")).to_have_text("Succeeded")
    assert _log_texts(page) == lines
    assert page.locator("#log b").count() == 0, "log text must be escaped, not rendered as HTML"
    # Give a (wrong) stream a moment to open before concluding there is none.
    page.wait_for_timeout(500)
    assert streams == []
    assert page.locator("[sse-connect]").count() == 0
    assert _log_texts(page) == lines


@pytest.mark.django_db(transaction=True)
def test_event_stream_refuses_an_anonymous_browser(
    anonymous_context: BrowserContext, dev: User, repository: Repository, dev_env: Environment
) -> None:
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev
    )
    LogLine.objects.create(deployment=deployment, entry_ms=1, entry_seq=0, text="secret build output")
    url = f"/deployments/{deployment.pk}/events"

    response = anonymous_context.request.get(url, max_redirects=0)
    assert response.status in (401, 403) or (
        300 <= response.status < 400 and "/login" in response.headers["location"]
    )
    assert "secret build output" not in response.text()

    # And an EventSource in a page of that context gives up without a single event.
    page = anonymous_context.new_page()
    page.goto("/login/")
    outcome = page.evaluate(
        """url => new Promise(resolve => {
            const source = new EventSource(url), got = [];
            source.addEventListener("line", e => got.push(e.data));
            source.onerror = () => { const state = source.readyState; source.close(); resolve({state, got}); };
            setTimeout(() => { source.close(); resolve({state: "timeout", got}); }, 5000);
        })""",
        url,
    )
    assert outcome == {"state": 2, "got": []}  # 2: EventSource.CLOSED, the browser will not retry
