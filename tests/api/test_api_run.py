"""One whole deployment through the API against the real worker, Redis, Docker engine and
registry: requested with a developer's token, refused to self-approve, approved with a
release manager's token (audited via="api"), followed to succeeded through the API."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest
from django.urls import reverse

from deployments.models import AuditEvent, Deployment, Status

from .conftest import ApiClient

FINAL = {"succeeded", "failed", "cancelled", "rolled_back", "rejected"}


def poll(api: ApiClient, pk: int, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(reverse("api_deployment", args=[pk])).json()
        if body["status"] in statuses:
            return body
        time.sleep(0.3)
    raise AssertionError(f"#{pk} still {body['status']} after {timeout} s: {body['error']}")


@pytest.mark.django_db(transaction=True)
def test_a_deployment_requested_approved_and_followed_through_the_api(
    celery_worker, dev, release, repository, live_env, make_token
):
    developer = ApiClient(make_token(dev, ("read", "deploy", "approve")))
    approver = ApiClient(make_token(release, ("read", "approve")))

    response = developer.post(
        reverse("api_deployments"), {"application": "demo", "environment": "live", "ref": "main"}
    )
    assert response.status_code == 201, response.json()
    pk = response.json()["id"]
    assert AuditEvent.objects.get(action="deployment.click", object_id=str(pk)).details["via"] == "api"

    waiting = poll(developer, pk, {"awaiting_approval"} | FINAL)
    assert waiting["status"] == "awaiting_approval", waiting["error"]
    assert waiting["image_digest"]

    own = developer.post(reverse("api_deployment_approve", args=[pk]), {"comment": "mine"})
    assert own.status_code == 409
    assert own.json() == {"code": "refused", "message": "You cannot approve your own deployment."}
    assert not AuditEvent.objects.filter(action="deployment.approve", object_id=str(pk)).exists()

    approved = approver.post(reverse("api_deployment_approve", args=[pk]), {"comment": "looks right"})
    assert approved.status_code == 200, approved.json()
    event = AuditEvent.objects.get(action="deployment.approve", object_id=str(pk))
    assert event.actor == release and event.details == {"via": "api", "comment": "looks right"}

    done = poll(approver, pk, FINAL)
    assert done["status"] == "succeeded", done["error"]
    assert {s["name"]: s["status"] for s in done["stages"]}["rollout"] == "succeeded"

    lines: list[str] = []
    after = ""
    while True:
        page = developer.get(reverse("api_deployment_log", args=[pk]), {"after": after, "limit": 50}).json()
        lines += [line["text"] for line in page["lines"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert page["finished"] is True
    assert "all demo tests passed" in "\n".join(lines)
    stored = Deployment.objects.get(pk=pk).log_lines.count()
    assert len(lines) == stored

    port = live_env.target_settings["port"]
    assert (
        b"Hello from Shipmate demo" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    )
    assert Deployment.objects.get(pk=pk).status == Status.SUCCEEDED
