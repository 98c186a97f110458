"""A deployment to a protected environment through two browsers: a developer asks for
live, a release manager decides in the Approvals inbox, and the developer's open page
follows the decision over its event stream. Chromium, the real ASGI server, a real
Celery worker, Docker engine and registry."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from deployments.models import Approval, AuditEvent, Deployment, Environment, Repository, Status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEPLOYMENT_URL = re.compile(r"/deployments/(\d+)/$")
BUILD_STAGES = ["checkout", "build", "test", "push"]
# Installed before the page's own scripts: when each status text first showed up in
# `#status`, and which document saw it, so timings do not depend on expect()'s polling
# and "without reload" can be checked.
WATCH_STATUS = """
window.__approval = {docId: Math.random(), seen: {}};
document.addEventListener("DOMContentLoaded", function () {
  var s = window.__approval;
  function look() {
    var st = document.getElementById("status");
    if (!st) return;
    var text = st.textContent.trim();
    if (text && !(text in s.seen)) s.seen[text] = Date.now();
  }
  look();
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true, characterData: true});
});
"""


def _request_live_deploy(page: Page) -> int:
    page.get_by_role("link", name="Deploy", exact=True).click()
    page.wait_for_url("**/deploy/")
    page.select_option("#id_repository", label="demo")
    page.fill("#id_ref", "main")
    page.select_option("#id_environment", label="live")
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.wait_for_url(DEPLOYMENT_URL)
    return int(DEPLOYMENT_URL.search(page.url).group(1))


def _wait_until_awaiting_approval(page: Page, pk: int) -> Deployment:
    expect(page.locator("#status")).to_have_text("Awaiting approval", timeout=60_000)
    deployment = Deployment.objects.get(pk=pk)
    assert deployment.status == Status.AWAITING_APPROVAL, deployment.error
    for name in BUILD_STAGES:
        expect(page.locator(f"li#stage-{name} .badge")).to_have_text("Succeeded")
    expect(page.locator("li#stage-rollout .badge")).to_have_text("Pending")
    assert deployment.image_digest.startswith(f"{settings.REGISTRY}/shipmate-test/demo@sha256:")
    expect(page.locator("#image-digest")).to_have_text(deployment.image_digest)
    return deployment


def _open_inbox_item(page: Page, pk: int) -> Any:
    expect(page.locator("#approval-count")).to_have_text("1")
    page.get_by_role("link", name=re.compile(r"^Approvals")).click()
    page.wait_for_url("**/approvals/")
    return page.locator(f"#approval-{pk}")


def test_developer_requests_live_release_manager_approves_and_it_ships(
    celery_worker: Any,
    asgi_server: str,
    logged_in_page: Callable[[User], Page],
    dev: User,
    release: User,
    repository: Repository,
    live_env: Environment,
) -> None:
    # 1. The developer asks for live; the build runs, then the run stops at the gate.
    dev_page = logged_in_page(dev)
    dev_page.context.add_init_script(WATCH_STATUS)
    requested_at = time.time() * 1000
    pk = _request_live_deploy(dev_page)
    doc_id = dev_page.evaluate("window.__approval.docId")
    deployment = _wait_until_awaiting_approval(dev_page, pk)
    awaiting_at = dev_page.evaluate("window.__approval.seen['Awaiting approval']")

    # 2. Not by the requester: no button, and a forged POST with a valid CSRF token is refused.
    expect(dev_page.locator("#approval")).to_be_visible()
    expect(dev_page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(dev_page.get_by_role("button", name="Reject")).to_have_count(0)
    csrf = next(c["value"] for c in dev_page.context.cookies() if c["name"] == "csrftoken")
    forged = dev_page.request.post(
        f"{asgi_server}/deployments/{pk}/approve",
        form={"comment": "looks fine to me"},
        headers={"X-CSRFToken": csrf},
    )
    # Reached the view (not a CSRF 403), which refused it.
    assert forged.ok, forged.status
    assert "You cannot approve your own deployment." in forged.text()
    assert Deployment.objects.get(pk=pk).status == Status.AWAITING_APPROVAL
    assert not Approval.objects.filter(deployment_id=pk).exists()

    # 3. The release manager finds it in the inbox and approves with a comment.
    release_page = logged_in_page(release)
    item = _open_inbox_item(release_page, pk)
    expect(item).to_contain_text(deployment.image_digest)
    expect(item).to_contain_text("Configuration changes")
    expect(item).to_contain_text("by dev")
    item.locator("textarea[name=comment]").fill("Ship it, checked the changelog")
    approved_at = time.time() * 1000
    item.get_by_role("button", name="Approve").click()
    release_page.wait_for_url("**/approvals/")
    expect(release_page.locator(".messages")).to_contain_text(f"Deployment #{pk} approved.")
    expect(release_page.locator(f"#approval-{pk}")).to_have_count(0)

    # 4. The developer's page, untouched since step 2, follows it to the end.
    expect(dev_page.locator("#status")).to_have_text("Succeeded", timeout=90_000)
    deployment.refresh_from_db()
    assert deployment.status == Status.SUCCEEDED, deployment.error
    expect(dev_page.locator("li#stage-approval .badge")).to_have_text("Succeeded")
    expect(dev_page.locator("li#stage-rollout .badge")).to_have_text("Succeeded")
    watched = dev_page.evaluate("window.__approval")
    assert watched["docId"] == doc_id
    assert dev_page.evaluate("performance.getEntriesByType('navigation').length") == 1
    served = urllib.request.urlopen(f"http://127.0.0.1:{live_env.target_settings['port']}/", timeout=5).read()
    assert b"Hello from Shipmate demo" in served
    approval = Approval.objects.get(deployment_id=pk)
    assert (approval.approver_id, approval.comment) == (release.pk, "Ship it, checked the changelog")
    assert approval.image_digest == deployment.image_digest

    # 5. History and the audit trail tell the same story.
    release_page.goto("/deployments/?environment=live")
    row = release_page.locator("#history tbody tr", has=release_page.locator(f'a[href="/deployments/{pk}/"]'))
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row).to_contain_text("live")

    release_page.get_by_role("link", name="Audit", exact=True).click()
    release_page.wait_for_url("**/audit/")
    rows = release_page.locator("#audit tbody tr", has=release_page.locator(f'a[href="/deployments/{pk}/"]'))
    events = [
        (cells[1].strip(), cells[2].strip())
        for cells in (r.locator("td").all_inner_texts() for r in rows.all())
    ]
    for expected in [
        ("dev", "deployment.click"),
        ("system", "deployment.awaiting_approval"),
        ("release", "deployment.approve"),
        ("system", "deployment.succeeded"),
    ]:
        assert expected in events, events
    approve_row = rows.filter(has_text="deployment.approve")
    expect(approve_row).to_contain_text("Ship it, checked the changelog")
    # Newest first: the trail reads back from success to the request.
    actions = [action for _, action in events]
    assert actions.index("deployment.succeeded") < actions.index("deployment.approve")
    assert actions.index("deployment.approve") < actions.index("deployment.awaiting_approval")
    assert actions.index("deployment.awaiting_approval") < actions.index("deployment.click")
    assert AuditEvent.objects.filter(object_id=str(pk), action="deployment.approve", actor=release).exists()

    succeeded_at = watched["seen"]["Succeeded"]
    timings = {
        "request_to_awaiting_approval_ms": round(awaiting_at - requested_at),
        "approve_click_to_succeeded_ms": round(succeeded_at - approved_at),
        "server_created_to_finished_ms": round(
            (deployment.finished_at - deployment.created_at).total_seconds() * 1000
        ),
        "statuses_seen_on_dev_page": sorted(watched["seen"], key=watched["seen"].get),
    }
    print(f"\napproval flow timings: {json.dumps(timings)}")


def test_release_manager_rejects_with_a_reason_and_the_requester_sees_it(
    celery_worker: Any,
    asgi_server: str,
    logged_in_page: Callable[[User], Page],
    dev: User,
    release: User,
    repository: Repository,
    live_env: Environment,
) -> None:
    dev_page = logged_in_page(dev)
    dev_page.context.add_init_script(WATCH_STATUS)
    pk = _request_live_deploy(dev_page)
    doc_id = dev_page.evaluate("window.__approval.docId")
    _wait_until_awaiting_approval(dev_page, pk)

    release_page = logged_in_page(release)
    item = _open_inbox_item(release_page, pk)
    # A rejection without a reason is refused and leaves the item waiting.
    item.get_by_role("button", name="Reject").click()
    release_page.wait_for_url("**/approvals/")
    expect(release_page.locator(".messages")).to_contain_text("Say why you reject it.")
    assert Deployment.objects.get(pk=pk).status == Status.AWAITING_APPROVAL
    item = release_page.locator(f"#approval-{pk}")
    reason = "Not during the <b>sale</b> weekend & not without QA"
    item.locator("textarea[name=comment]").fill(reason)
    item.get_by_role("button", name="Reject").click()
    release_page.wait_for_url("**/approvals/")
    expect(release_page.locator(".messages")).to_contain_text(f"Deployment #{pk} rejected.")
    expect(release_page.locator(f"#approval-{pk}")).to_have_count(0)
    expect(release_page.locator("#approval-count")).to_have_count(0)

    # The requester's open page shows the outcome and the reason, escaped, without a reload.
    expect(dev_page.locator("#status")).to_have_text("Rejected", timeout=15_000)
    expect(dev_page.locator("#error")).to_have_text(f"Rejected by release: {reason}")
    assert dev_page.locator("#error b").count() == 0
    expect(dev_page.locator("li#stage-rollout .badge")).to_have_text("Cancelled")
    assert dev_page.evaluate("window.__approval.docId") == doc_id
    assert dev_page.evaluate("performance.getEntriesByType('navigation').length") == 1

    deployment = Deployment.objects.get(pk=pk)
    assert deployment.status == Status.REJECTED
    assert deployment.finished_at is not None
    # Nothing was rolled out: no container answers on the live port.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{live_env.target_settings['port']}/", timeout=2)
    assert AuditEvent.objects.filter(object_id=str(pk), action="deployment.reject", actor=release).exists()
