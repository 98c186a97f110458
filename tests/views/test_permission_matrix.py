"""Who may do what, through the real views: every role against every environment and
action, checking both the response and what changed in the database.

The policy is the EXPECTED table below. Outcomes:
- DONE: the action took effect (or the page was served) and its audit event was written;
- REFUSED: the page let the user ask, the service said no with a message, nothing changed;
- SHOWN / HIDDEN: a listing was served, with or without the object in question;
- FORBIDDEN (403), INVALID (400), LOGIN (redirect to the login page): nothing changed.
Whenever the outcome is not DONE, no audit event may have been written either.

Task messages are never published: requests run inside
`django_capture_on_commit_callbacks(execute=False)`. (Without it they would not be
either, since a non-transactional test never commits, so on_commit callbacks are
dropped; the capture makes it explicit and lets the deploy case check that the
dispatch was queued.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.contrib.messages.constants import ERROR
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.models import Approval, AuditEvent, Deployment, Environment, Status, Trigger
from deployments.webhooks.models import WebhookConfig

pytestmark = pytest.mark.django_db

DONE, REFUSED, SHOWN, HIDDEN = "done", "refused", "shown", "hidden"
FORBIDDEN, INVALID, LOGIN = "403", "400", "login"

ROLES = ("dev", "release", "admin", "outsider", "anonymous")
ANY = "any"  # the action does not depend on an environment

# Both environments let all three role groups deploy and Release managers + Admins
# approve (tests/conftest.py); "live" also requires one approval before it rolls out.
# "own" means requested by the acting user; "other" means requested by dev2.
# fmt: off
EXPECTED: dict[tuple[str, str], tuple[str, ...]] = {
    #                               dev        release    admin      outsider   anonymous
    ("dashboard", "dev"):          (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("dashboard", "live"):         (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("environment page", "dev"):   (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("environment page", "live"):  (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("history", "dev"):            (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("history", "live"):           (SHOWN,     SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("approval inbox", "dev"):     (HIDDEN,    SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("approval inbox", "live"):    (HIDDEN,    SHOWN,     SHOWN,     HIDDEN,    LOGIN),
    ("deploy", "dev"):             (DONE,      DONE,      DONE,      INVALID,   LOGIN),
    ("deploy", "live"):            (DONE,      DONE,      DONE,      INVALID,   LOGIN),
    ("deployment page", "dev"):    (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("deployment page", "live"):   (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    # The stream answers 403 rather than redirecting: EventSource cannot follow a login.
    ("live log", "dev"):           (DONE,      DONE,      DONE,      FORBIDDEN, FORBIDDEN),
    ("live log", "live"):          (DONE,      DONE,      DONE,      FORBIDDEN, FORBIDDEN),
    ("log download", "dev"):       (DONE,      DONE,      DONE,      FORBIDDEN, FORBIDDEN),
    ("log download", "live"):      (DONE,      DONE,      DONE,      FORBIDDEN, FORBIDDEN),
    # An outsider's "own" deployment dates from when they still had a role.
    ("cancel own", "dev"):         (DONE,      DONE,      DONE,      REFUSED,   LOGIN),
    ("cancel own", "live"):        (DONE,      DONE,      DONE,      REFUSED,   LOGIN),
    ("cancel other", "dev"):       (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("cancel other", "live"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("approve other", "dev"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("approve other", "live"):     (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("approve own", "dev"):        (REFUSED,   REFUSED,   REFUSED,   REFUSED,   LOGIN),
    ("approve own", "live"):       (REFUSED,   REFUSED,   REFUSED,   REFUSED,   LOGIN),
    ("reject other", "dev"):       (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("reject other", "live"):      (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("reject own", "dev"):         (REFUSED,   REFUSED,   REFUSED,   REFUSED,   LOGIN),
    ("reject own", "live"):        (REFUSED,   REFUSED,   REFUSED,   REFUSED,   LOGIN),
    ("rollback", "dev"):           (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("rollback", "live"):          (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("promote", "dev"):            (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("promote", "live"):           (DONE,      DONE,      DONE,      FORBIDDEN, LOGIN),
    ("lock", "dev"):               (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("lock", "live"):              (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("unlock", "dev"):             (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("unlock", "live"):            (REFUSED,   DONE,      DONE,      FORBIDDEN, LOGIN),
    ("webhook secret", "dev"):     (FORBIDDEN, FORBIDDEN, DONE,      FORBIDDEN, LOGIN),
    ("webhook secret", "live"):    (FORBIDDEN, FORBIDDEN, DONE,      FORBIDDEN, LOGIN),
    ("webhook rules", "dev"):      (FORBIDDEN, FORBIDDEN, DONE,      FORBIDDEN, LOGIN),
    ("webhook rules", "live"):     (FORBIDDEN, FORBIDDEN, DONE,      FORBIDDEN, LOGIN),
    ("manage pages", ANY):         (FORBIDDEN, FORBIDDEN, DONE,      FORBIDDEN, LOGIN),
    ("audit page", ANY):           (FORBIDDEN, DONE,      DONE,      FORBIDDEN, LOGIN),
}
# fmt: on


@dataclass
class World:
    users: dict[str, User]
    envs: dict[str, Environment]
    repository: Any
    user: User | None  # the acting user; None when anonymous
    env: Environment
    client: Client
    capture: Callable[..., Any]

    @property
    def other_env(self) -> Environment:
        return next(e for e in self.envs.values() if e.pk != self.env.pk)

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
            return self.client.post(url, data or {})

    def get(self, url: str, **params: Any) -> Any:
        with self.capture(execute=False):
            return self.client.get(url, params)


def error_messages(response: Any) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request) if m.level == ERROR]


def refused_or_denied(response: Any) -> str:
    """Classify a response whose action changed nothing."""
    if response.status_code == 302 and response.url.startswith(reverse("login")):
        return LOGIN
    if response.status_code in (400, 403):
        return str(response.status_code)
    if response.status_code == 302 and error_messages(response):
        return REFUSED
    return f"unexpected {response.status_code} without an error message"


def took_effect(response: Any, changed: bool) -> str:
    if not changed:
        return refused_or_denied(response)
    assert response.status_code in (200, 302), response.status_code
    assert not error_messages(response), error_messages(response)
    return DONE


def page(response: Any, marker: str | None = None) -> str:
    if response.status_code != 200:
        return refused_or_denied(response)
    if marker is None:
        return DONE
    return SHOWN if marker in response.content.decode() else HIDDEN


def first_chunk(response: Any) -> bytes:
    """The first bytes of an async streaming response; then the stream is closed."""

    async def read() -> bytes:
        stream = response.streaming_content
        try:
            return await anext(stream, b"")
        finally:
            await stream.aclose()

    return async_to_sync(read)()


def streamed(response: Any, content_type: str) -> str:
    if response.status_code != 200:
        return refused_or_denied(response)
    assert response["Content-Type"].startswith(content_type)
    return DONE


# Each action returns the outcome it observed, or (outcome, audit action) when it changes state.


def dashboard(w: World) -> str:
    return page(w.get(reverse("dashboard")), f'data-env="{w.env.name}"')


def environment_page(w: World) -> str:
    return page(w.get(reverse("environment_detail", args=[w.env.name])))


def history(w: World) -> str:
    d = w.deployment()
    return page(w.get(reverse("history")), f'href="{reverse("deployment_detail", args=[d.pk])}"')


def approval_inbox(w: World) -> str:
    d = w.deployment(status=Status.AWAITING_APPROVAL)
    return page(w.get(reverse("approvals")), f'href="{reverse("deployment_detail", args=[d.pk])}"')


def deploy(w: World) -> tuple[str, str]:
    with w.capture(execute=False) as callbacks:
        response = w.client.post(
            reverse("deploy"), {"repository": w.repository.pk, "environment": w.env.pk, "ref": "main"}
        )
    made = Deployment.objects.filter(environment=w.env, status=Status.QUEUED, requested_by=w.user or None)
    outcome = took_effect(response, made.exists())
    if outcome == DONE:
        assert made.count() == 1 and response.url == reverse("deployment_detail", args=[made.get().pk])
        assert callbacks, "the deployment's dispatch should wait for the commit"
    else:
        assert not Deployment.objects.exists()
    return outcome, "deployment.click"


def deployment_page(w: World) -> str:
    d = w.deployment()
    response = w.get(reverse("deployment_detail", args=[d.pk]))
    outcome = page(response)
    if outcome == DONE:
        assert f"#{d.pk}" in response.content.decode()
    return outcome


def live_log(w: World) -> str:
    # A finished deployment, so the stream would end by itself if read to the end.
    d = w.deployment(status=Status.SUCCEEDED, finished_at=timezone.now())
    response = w.get(reverse("deployment_events", args=[d.pk]))
    outcome = streamed(response, "text/event-stream")
    if outcome == DONE:
        assert first_chunk(response).startswith(b"retry:")
    return outcome


def log_download(w: World) -> str:
    d = w.deployment(status=Status.SUCCEEDED, finished_at=timezone.now())
    response = w.get(reverse("deployment_log", args=[d.pk]))
    outcome = streamed(response, "text/plain")
    if outcome == DONE:
        assert first_chunk(response) == b""  # no lines were logged
    return outcome


def _cancel(w: World, d: Deployment) -> tuple[str, str]:
    response = w.post(reverse("deployment_cancel", args=[d.pk]))
    d.refresh_from_db()
    return took_effect(response, d.status == Status.CANCELLED), "deployment.cancel"


def cancel_own(w: World) -> tuple[str, str]:
    return _cancel(w, w.own())


def cancel_other(w: World) -> tuple[str, str]:
    return _cancel(w, w.deployment())


def _decide(w: World, d: Deployment, decision: str) -> tuple[str, str]:
    response = w.post(reverse(f"deployment_{decision}", args=[d.pk]), {"comment": "looked at it"})
    d.refresh_from_db()
    status = {"approve": Status.APPROVED, "reject": Status.REJECTED}[decision]
    recorded = Approval.objects.filter(deployment=d, approver=w.user).exists() if w.user else False
    outcome = took_effect(response, d.status == status)
    assert recorded == (outcome == DONE)
    if outcome != DONE:
        assert d.status == Status.AWAITING_APPROVAL
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
    response = w.post(reverse("environment_rollback", args=[w.env.name]))
    made = Deployment.objects.filter(trigger=Trigger.ROLLBACK)
    outcome = took_effect(response, made.exists())
    if outcome == DONE:
        assert made.get().image_digest == previous.image_digest and made.get().requested_by == w.user
    return outcome, "deployment.rollback"


def promote(w: World) -> tuple[str, str]:
    # Promotion goes forward only: the source comes before both dev and live.
    earlier = Environment.objects.create(name="build", order=0)
    earlier.deploy_groups.set(Group.objects.all())
    source = w.succeeded(earlier, "3", ago=5)
    response = w.post(reverse("environment_promote", args=[w.env.name]), {"source": earlier.name})
    made = Deployment.objects.filter(trigger=Trigger.PROMOTION, environment=w.env)
    outcome = took_effect(response, made.exists())
    if outcome == DONE:
        assert made.get().image_digest == source.image_digest and made.get().requested_by == w.user
    return outcome, "deployment.promotion"


def lock(w: World) -> tuple[str, str]:
    response = w.post(reverse("environment_lock", args=[w.env.name]), {"reason": "database migration"})
    w.env.refresh_from_db()
    outcome = took_effect(response, w.env.is_locked)
    if outcome == DONE:
        assert w.env.locked_by == w.user and w.env.locked_reason == "database migration"
    return outcome, "environment.lock"


def unlock(w: World) -> tuple[str, str]:
    Environment.objects.filter(pk=w.env.pk).update(
        locked_by=w.users["admin"], locked_reason="incident", locked_at=timezone.now()
    )
    response = w.post(reverse("environment_unlock", args=[w.env.name]))
    w.env.refresh_from_db()
    return took_effect(response, not w.env.is_locked), "environment.unlock"


def webhook_secret(w: World) -> tuple[str, str]:
    response = w.post(reverse("webhook_secret", args=[w.repository.name, w.env.name]))
    made = WebhookConfig.objects.filter(placement__environment=w.env).exclude(secret_encrypted="")
    return took_effect(response, made.exists()), "webhook.secret_create"


def webhook_rules(w: World) -> tuple[str, str]:
    url = reverse("webhook_rules", args=[w.repository.name, w.env.name])
    response = w.post(url, {"branch_patterns": "main", "tag_patterns": "v*"})
    made = WebhookConfig.objects.filter(placement__environment=w.env, branch_patterns="main")
    return took_effect(response, made.exists()), "webhook.rules"


def manage_pages(w: World) -> str:
    return page(w.get(reverse("manage_home")))


def audit_page(w: World) -> str:
    return page(w.get(reverse("audit")))


ACTIONS: dict[str, Callable[[World], str | tuple[str, str]]] = {
    "dashboard": dashboard,
    "environment page": environment_page,
    "history": history,
    "approval inbox": approval_inbox,
    "deploy": deploy,
    "deployment page": deployment_page,
    "live log": live_log,
    "log download": log_download,
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
    "webhook secret": webhook_secret,
    "webhook rules": webhook_rules,
    "manage pages": manage_pages,
    "audit page": audit_page,
}

CASES = [
    pytest.param(action, env, role, expected, id=f"{action}-{env}-{role}".replace(" ", "_"))
    for (action, env), row in EXPECTED.items()
    for role, expected in zip(ROLES, row, strict=True)
]


def test_every_action_has_a_row_for_each_environment():
    for action in ACTIONS:
        envs = {env for (name, env) in EXPECTED if name == action}
        assert envs in ({"dev", "live"}, {ANY}), (action, envs)
    assert {name for name, _ in EXPECTED} == set(ACTIONS)


@pytest.mark.parametrize(("action", "env_name", "role", "expected"), CASES)
def test_permission_matrix(
    action, env_name, role, expected, dev, dev2, release, admin, outsider, repository, dev_env, live_env,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    users = {"dev": dev, "dev2": dev2, "release": release, "admin": admin, "outsider": outsider}
    envs = {"dev": dev_env, "live": live_env}
    user = users.get(role)
    client = Client()
    if user is not None:
        client.force_login(user)
    world = World(
        users=users, envs=envs, repository=repository, user=user, env=envs.get(env_name, dev_env),
        client=client, capture=django_capture_on_commit_callbacks,
    )  # fmt: skip
    audited_before = set(AuditEvent.objects.values_list("pk", flat=True))

    result = ACTIONS[action](world)

    outcome, audit_action = result if isinstance(result, tuple) else (result, None)
    assert outcome == expected, f"{role} {action} on {env_name}: expected {expected}, got {outcome}"
    new_events = AuditEvent.objects.exclude(pk__in=audited_before)
    if outcome == DONE and audit_action:
        assert new_events.filter(action=audit_action, actor=user).exists(), list(new_events.values("action"))
    else:
        assert not new_events.exists(), list(new_events.values_list("action", flat=True))
