"""Who may do what through the API, with a token holding every scope: the same roles,
environments and rules as the pages (tests/views/test_permission_matrix.py), since both
call the same services. Outcomes:
- DONE: 200/201 and the change (with its audit event, marked via="api");
- REFUSED: 409 `refused`, the service said no; nothing changed;
- FORBIDDEN: 403 `forbidden`; UNAUTHENTICATED: 401 (no token);
- SHOWN / HIDDEN: a listing with or without the object.
Where the pages answer 400 (the Deploy form offers an outsider nothing), the API, which
has no form, answers 409 `refused` from the service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from deployments import services
from deployments.models import Approval, AuditEvent, Deployment, Environment, LogLine, Status, Trigger

from .conftest import ApiClient

pytestmark = pytest.mark.django_db

DONE, REFUSED, SHOWN, HIDDEN = "done", "refused", "shown", "hidden"
FORBIDDEN, UNAUTHENTICATED = "403", "401"
ROLES = ("dev", "release", "admin", "outsider", "anonymous")
ANY = "any"

# fmt: off
EXPECTED: dict[tuple[str, str], tuple[str, ...]] = {
    #                               dev        release    admin      outsider   anonymous
    ("environments", "dev"):       (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("environments", "live"):      (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("environment", "dev"):        (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("environment", "live"):       (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("applications", ANY):         (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("placements", "dev"):         (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("placements", "live"):        (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("deployments", "dev"):        (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("deployments", "live"):       (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("deployment", "dev"):         (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("deployment", "live"):        (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("log", "dev"):                (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("log", "live"):               (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("events", "dev"):             (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("events", "live"):            (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("locks", "dev"):              (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("locks", "live"):             (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    UNAUTHENTICATED),
    ("audit", "dev"):              (FORBIDDEN, SHOWN,     SHOWN,     FORBIDDEN, UNAUTHENTICATED),
    ("audit", "live"):             (FORBIDDEN, SHOWN,     SHOWN,     FORBIDDEN, UNAUTHENTICATED),
    ("deploy", "dev"):             (DONE,      DONE,      DONE,      REFUSED,   UNAUTHENTICATED),
    ("deploy", "live"):            (DONE,      DONE,      DONE,      REFUSED,   UNAUTHENTICATED),
    ("cancel own", "dev"):         (DONE,      DONE,      DONE,      REFUSED,   UNAUTHENTICATED),
    ("cancel own", "live"):        (DONE,      DONE,      DONE,      REFUSED,   UNAUTHENTICATED),
    ("cancel other", "dev"):       (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("cancel other", "live"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("approve other", "dev"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("approve other", "live"):     (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("approve own", "dev"):        (REFUSED,   REFUSED,   REFUSED,   REFUSED,   UNAUTHENTICATED),
    ("approve own", "live"):       (REFUSED,   REFUSED,   REFUSED,   REFUSED,   UNAUTHENTICATED),
    ("reject other", "dev"):       (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("reject other", "live"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("reject own", "dev"):         (REFUSED,   REFUSED,   REFUSED,   REFUSED,   UNAUTHENTICATED),
    ("reject own", "live"):        (REFUSED,   REFUSED,   REFUSED,   REFUSED,   UNAUTHENTICATED),
    ("rollback", "dev"):           (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("rollback", "live"):          (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("promote", "dev"):            (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("promote", "live"):           (DONE,      DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("lock", "dev"):               (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("lock", "live"):              (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("unlock", "dev"):             (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
    ("unlock", "live"):            (REFUSED,   DONE,      DONE,      FORBIDDEN, UNAUTHENTICATED),
}
# fmt: on


@dataclass
class World:
    users: dict[str, User]
    repository: Any
    user: User | None
    env: Environment
    api: ApiClient
    capture: Callable[..., Any]

    def deployment(
        self, *, by: User | None = None, env: Environment | None = None, **fields: Any
    ) -> Deployment:
        fields.setdefault("commit_sha", "c" * 40)
        fields.setdefault("image_digest", "127.0.0.1:5001/demo@sha256:" + "d" * 64)
        return Deployment.objects.create(
            repository=self.repository, environment=env or self.env, ref="main",
            requested_by=by or self.users["dev2"], **fields,
        )  # fmt: skip

    def own(self, **fields: Any) -> Deployment:
        return self.deployment(by=self.user, **fields) if self.user else self.deployment(**fields)

    def succeeded(self, env: Environment, digest: str, *, ago: int) -> Deployment:
        return self.deployment(
            env=env, status=Status.SUCCEEDED, image_digest=f"127.0.0.1:5001/demo@sha256:{digest * 64}",
            finished_at=timezone.now() - timedelta(minutes=ago),
        )  # fmt: skip

    def post(self, url: str, data: dict[str, Any] | None = None) -> Any:
        with self.capture(execute=False):
            return self.api.post(url, data)

    def get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return self.api.get(url, params)


def classify(response: Any, changed: bool) -> str:
    if changed:
        assert response.status_code in (200, 201), response.content
        return DONE
    body = response.json()
    if response.status_code == 409:
        assert body["code"] == "refused", body
        return REFUSED
    expected_code = {401: "unauthenticated", 403: "forbidden"}.get(response.status_code)
    assert body["code"] == expected_code, (response.status_code, body)
    return str(response.status_code)


def listing(response: Any, present: bool) -> str:
    if response.status_code != 200:
        return classify(response, False)
    return SHOWN if present else HIDDEN


def environments(w: World) -> str:
    response = w.get(reverse("api_environments"))
    return listing(
        response, response.status_code == 200 and w.env.name in [e["name"] for e in response.json()]
    )


def environment(w: World) -> str:
    response = w.get(reverse("api_environment", args=[w.env.name]))
    return DONE if response.status_code == 200 else classify(response, False)


def applications(w: World) -> str:
    response = w.get(reverse("api_applications"))
    return listing(response, response.status_code == 200 and "demo" in [a["name"] for a in response.json()])


def placements(w: World) -> str:
    response = w.get(reverse("api_placements"))
    found = response.status_code == 200 and {"application": "demo", "environment": w.env.name} in [
        {"application": p["application"], "environment": p["environment"]} for p in response.json()
    ]
    return listing(response, found)


def deployments(w: World) -> str:
    d = w.deployment()
    response = w.get(reverse("api_deployments"), {"environment": w.env.name})
    found = response.status_code == 200 and d.pk in [r["id"] for r in response.json()["results"]]
    return listing(response, found)


def deployment(w: World) -> str:
    d = w.deployment()
    response = w.get(reverse("api_deployment", args=[d.pk]))
    if response.status_code != 200:
        return classify(response, False)
    assert response.json()["id"] == d.pk and len(response.json()["stages"]) == 0
    return DONE


def log(w: World) -> str:
    d = w.deployment(status=Status.SUCCEEDED, finished_at=timezone.now())
    LogLine.objects.create(deployment=d, entry_ms=1, entry_seq=0, stage="build", text="hello", number=1)
    response = w.get(reverse("api_deployment_log", args=[d.pk]))
    if response.status_code != 200:
        return classify(response, False)
    assert [line["text"] for line in response.json()["lines"]] == ["hello"]
    return DONE


def events(w: World) -> str:
    # A finished deployment: the stream is not read here (tests/api/test_events.py reads it).
    d = w.deployment(status=Status.SUCCEEDED, finished_at=timezone.now())
    response = w.get(reverse("api_deployment_events", args=[d.pk]))
    if response.status_code != 200:
        return classify(response, False)
    assert response["Content-Type"] == "text/event-stream"
    return DONE


def locks(w: World) -> str:
    Environment.objects.filter(pk=w.env.pk).update(
        locked_by=w.users["admin"], locked_reason="incident", locked_at=timezone.now()
    )
    response = w.get(reverse("api_locks"))
    found = response.status_code == 200 and {"kind": "environment", "environment": w.env.name} in [
        {"kind": r["kind"], "environment": r["environment"]} for r in response.json()
    ]
    return listing(response, found)


def seed_audit(w: World) -> None:
    """An audit event to list, written before the test's count of new events starts."""
    with w.capture(execute=True):
        services.environment_lock(user=w.users["admin"], environment=w.env, reason="audit me")


def audit(w: World) -> str:
    response = w.get(reverse("api_audit"), {"action": "environment.lock"})
    found = response.status_code == 200 and "audit me" in str(response.json()["results"])
    return listing(response, found)


def deploy(w: World) -> tuple[str, str]:
    with w.capture(execute=False) as callbacks:
        response = w.api.post(
            reverse("api_deployments"), {"application": "demo", "environment": w.env.name, "ref": "main"}
        )
    made = Deployment.objects.filter(environment=w.env, status=Status.QUEUED, requested_by=w.user or None)
    outcome = classify(response, made.exists())
    if outcome == DONE:
        assert response.status_code == 201 and response.json()["id"] == made.get().pk
        assert callbacks, "the deployment's dispatch should wait for the commit"
    return outcome, "deployment.click"


def _cancel(w: World, d: Deployment) -> tuple[str, str]:
    response = w.post(reverse("api_deployment_cancel", args=[d.pk]))
    d.refresh_from_db()
    return classify(response, d.status == Status.CANCELLED), "deployment.cancel"


def cancel_own(w: World) -> tuple[str, str]:
    return _cancel(w, w.own())


def cancel_other(w: World) -> tuple[str, str]:
    return _cancel(w, w.deployment())


def _decide(w: World, d: Deployment, decision: str) -> tuple[str, str]:
    response = w.post(reverse(f"api_deployment_{decision}", args=[d.pk]), {"comment": "looked at it"})
    d.refresh_from_db()
    status = {"approve": Status.APPROVED, "reject": Status.REJECTED}[decision]
    recorded = Approval.objects.filter(deployment=d, approver=w.user).exists() if w.user else False
    outcome = classify(response, d.status == status)
    assert recorded == (outcome == DONE)
    return outcome, f"deployment.{decision}"


def approve_other(w: World) -> tuple[str, str]:
    return _decide(w, w.deployment(status=Status.AWAITING_APPROVAL), "approve")


def approve_own(w: World) -> tuple[str, str]:
    return _decide(w, w.own(status=Status.AWAITING_APPROVAL), "approve")


def reject_other(w: World) -> tuple[str, str]:
    return _decide(w, w.deployment(status=Status.AWAITING_APPROVAL), "reject")


def reject_own(w: World) -> tuple[str, str]:
    return _decide(w, w.own(status=Status.AWAITING_APPROVAL), "reject")


def rollback(w: World) -> tuple[str, str]:
    previous = w.succeeded(w.env, "1", ago=20)
    w.succeeded(w.env, "2", ago=10)
    response = w.post(reverse("api_rollback", args=[w.env.name]))
    made = Deployment.objects.filter(trigger=Trigger.ROLLBACK)
    outcome = classify(response, made.exists())
    if outcome == DONE:
        assert made.get().image_digest == previous.image_digest and made.get().requested_by == w.user
    return outcome, "deployment.rollback"


def promote(w: World) -> tuple[str, str]:
    earlier = Environment.objects.create(name="build", order=0)
    earlier.deploy_groups.set(Group.objects.all())
    source = w.succeeded(earlier, "3", ago=5)
    response = w.post(reverse("api_promote", args=[w.env.name]), {"source": earlier.name})
    made = Deployment.objects.filter(trigger=Trigger.PROMOTION, environment=w.env)
    outcome = classify(response, made.exists())
    if outcome == DONE:
        assert made.get().image_digest == source.image_digest and made.get().requested_by == w.user
    return outcome, "deployment.promotion"


def lock(w: World) -> tuple[str, str]:
    response = w.post(reverse("api_environment_lock", args=[w.env.name]), {"reason": "database migration"})
    w.env.refresh_from_db()
    outcome = classify(response, w.env.is_locked)
    if outcome == DONE:
        assert w.env.locked_by == w.user and response.json()["locked_reason"] == "database migration"
    return outcome, "environment.lock"


def unlock(w: World) -> tuple[str, str]:
    Environment.objects.filter(pk=w.env.pk).update(
        locked_by=w.users["admin"], locked_reason="incident", locked_at=timezone.now()
    )
    response = w.post(reverse("api_environment_unlock", args=[w.env.name]))
    w.env.refresh_from_db()
    return classify(response, not w.env.is_locked), "environment.unlock"


ACTIONS: dict[str, Callable[[World], str | tuple[str, str]]] = {
    "environments": environments,
    "environment": environment,
    "applications": applications,
    "placements": placements,
    "deployments": deployments,
    "deployment": deployment,
    "log": log,
    "events": events,
    "locks": locks,
    "audit": audit,
    "deploy": deploy,
    "cancel own": cancel_own,
    "cancel other": cancel_other,
    "approve other": approve_other,
    "approve own": approve_own,
    "reject other": reject_other,
    "reject own": reject_own,
    "rollback": rollback,
    "promote": promote,
    "lock": lock,
    "unlock": unlock,
}

CASES = [
    pytest.param(action, env, role, expected, id=f"{action}-{env}-{role}".replace(" ", "_"))
    for (action, env), row in EXPECTED.items()
    for role, expected in zip(ROLES, row, strict=True)
]


def test_every_action_has_a_row_for_each_environment():
    assert {name for name, _ in EXPECTED} == set(ACTIONS)


def test_every_api_url_is_in_the_matrix():
    from deployments.api import urls

    names = {p.name for p in urls.urlpatterns} - {"api_schema", "api_docs"}
    covered = {
        "api_environments", "api_environment", "api_applications", "api_placements", "api_deployments",
        "api_deployment", "api_deployment_log", "api_deployment_cancel", "api_deployment_approve",
        "api_deployment_reject", "api_rollback", "api_promote", "api_environment_lock", "api_environment_unlock",
        "api_deployment_events", "api_locks", "api_audit",
    }  # fmt: skip
    assert names == covered


@pytest.mark.parametrize(("action", "env_name", "role", "expected"), CASES)
def test_api_permission_matrix(
    action, env_name, role, expected, dev, dev2, release, admin, outsider, repository, dev_env, live_env,
    make_token, django_capture_on_commit_callbacks,
):  # fmt: skip
    users = {"dev": dev, "dev2": dev2, "release": release, "admin": admin, "outsider": outsider}
    envs = {"dev": dev_env, "live": live_env}
    user = users.get(role)
    api = ApiClient(make_token(user) if user else None)
    world = World(
        users=users, repository=repository, user=user, env=envs.get(env_name, dev_env), api=api,
        capture=django_capture_on_commit_callbacks,
    )  # fmt: skip
    if action == "audit":
        seed_audit(world)
    audited_before = set(AuditEvent.objects.values_list("pk", flat=True))

    result = ACTIONS[action](world)

    outcome, audit_action = result if isinstance(result, tuple) else (result, None)
    assert outcome == expected, f"{role} {action} on {env_name}: expected {expected}, got {outcome}"
    new_events = AuditEvent.objects.exclude(pk__in=audited_before)
    if outcome == DONE and audit_action:
        events = list(new_events.filter(action=audit_action, actor=user))
        assert events and all(e.details.get("via") == "api" for e in events), list(new_events.values())
    else:
        assert not new_events.exists(), list(new_events.values_list("action", flat=True))
