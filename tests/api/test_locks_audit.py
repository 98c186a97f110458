"""`GET locks/` lists the locks in force, `GET audit/` pages the audit trail with the
audit page's filters, and `placements/` says what runs where."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from deployments import services
from deployments.models import AuditEvent, Deployment, Environment, Placement, Status

pytestmark = pytest.mark.django_db


def test_locks_lists_environment_and_placement_locks_in_force_only(
    api_as, dev, admin, repository, dev_env, live_env, make_environment
):
    services.environment_lock(user=admin, environment=dev_env, reason="migration", expires_at=None)
    expired = make_environment("stage", order=20)
    Environment.objects.filter(pk=expired.pk).update(
        locked_by=admin, locked_reason="old", locked_at=timezone.now() - timedelta(hours=2),
        lock_expires_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    Placement.objects.filter(repository=repository, environment=live_env).update(
        locked_by=admin, locked_reason="hotfix only", locked_at=timezone.now()
    )

    rows = api_as(dev, ("read",)).get(reverse("api_locks")).json()

    assert [(r["kind"], r["environment"], r["application"], r["locked_by"], r["reason"]) for r in rows] == [
        ("environment", "dev", None, "admin", "migration"),
        ("placement", "live", "demo", "admin", "hotfix only"),
    ]
    assert rows[0]["since"] and rows[0]["expires_at"] is None


def test_locks_hides_environments_the_user_cannot_see(api_as, outsider, admin, dev_env):
    services.environment_lock(user=admin, environment=dev_env, reason="migration", expires_at=None)
    assert api_as(outsider, ("read",)).get(reverse("api_locks")).json() == []


def _event(n: int, action: str = "deployment.click", actor: str = "dev") -> AuditEvent:
    return AuditEvent.objects.create(
        actor_name=actor, action=action, object_type="deployment", object_id=str(n), object_repr=f"#{n}"
    )


def test_audit_pages_newest_first_with_before(api_as, release):
    events = [_event(n) for n in range(7)]
    api = api_as(release, ("read",))
    seen: list[int] = []
    params: dict[str, object] = {"limit": 3, "action": "deployment.click"}
    while True:
        page = api.get(reverse("api_audit"), params).json()
        seen += [e["id"] for e in page["results"]]
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    assert seen == [e.pk for e in reversed(events)]


def test_audit_filters_as_the_audit_page_does(api_as, admin):
    _event(1, actor="dev")
    _event(2, action="environment.lock", actor="admin")
    _event(3, actor="admin")
    api = api_as(admin, ("read",))

    def ids(**params: str) -> list[str]:
        return [e["object_id"] for e in api.get(reverse("api_audit"), params).json()["results"]]

    assert ids(actor="admin", object_type="deployment") == ["3", "2"]
    assert ids(action="environment.lock") == ["2"]
    assert ids(q="#1") == ["1"]
    body = api.get(reverse("api_audit"), {"action": "environment.lock"}).json()["results"][0]
    assert body["actor"] == "admin" and body["object_repr"] == "#2"


def test_audit_is_for_release_managers_and_admins_only(api_as, dev, release):
    _event(1)
    refused = api_as(dev, ("read",)).get(reverse("api_audit"))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert api_as(release, ("read",)).get(reverse("api_audit")).status_code == 200
    no_read = api_as(release, ("deploy",)).get(reverse("api_audit"))
    assert no_read.status_code == 403


def test_placements_name_the_deployment_that_runs_and_environments_say_if_frozen(
    api_as, dev, repository, dev_env
):
    now = timezone.now()
    for minutes, ref, status in (
        (30, "v1", Status.SUCCEEDED),
        (20, "v2", Status.SUCCEEDED),
        (10, "v3", Status.FAILED),
    ):
        Deployment.objects.create(
            repository=repository, environment=dev_env, ref=ref, status=status, requested_by=dev,
            commit_sha="a" * 40, finished_at=now - timedelta(minutes=minutes),
        )  # fmt: skip
    dev_env.freeze_windows.create(
        kind="once",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        reason="release week",
    )
    api = api_as(dev, ("read",))

    [placement] = api.get(reverse("api_placements")).json()
    assert placement["current"]["ref"] == "v2" and placement["current"]["requested_by"] == "dev"
    assert api.get(reverse("api_environment", args=["dev"])).json()["is_frozen"] is True
