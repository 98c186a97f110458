"""The hook fires for each transition, from the one place that makes it, for the
channels subscribed to that environment or placement only; it never breaks a run."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from deployments import services
from deployments.models import Deployment, Placement, Stage, Status
from deployments.models.deployment import STAGE_NAMES
from deployments.notifications import hooks
from deployments.notifications.models import Channel, Delivery, Event, Subscription
from deployments.services import lifecycle

pytestmark = pytest.mark.django_db

ALL = [e.value for e in Event]


def channel(
    name: str, *, environments: Any = (), placements: Any = (), events: Any = ALL, **fields: Any
) -> Channel:
    fields.setdefault("kind", "webhook")
    fields.setdefault("url", "http://127.0.0.1:9/hook")
    c = Channel.objects.create(name=name, events=list(events), **fields)
    for env in environments:
        Subscription.objects.create(channel=c, environment=env)
    for p in placements:
        Subscription.objects.create(channel=c, placement=p)
    return c


def events_of(c: Channel) -> list[str]:
    return list(Delivery.objects.filter(channel=c).order_by("id").values_list("event", flat=True))


def running(repository: Any, env: Any, user: Any, **fields: Any) -> Deployment:
    d = Deployment.objects.create(
        repository=repository, environment=env, ref="main", requested_by=user, status=Status.RUNNING,
        claim_token="t", commit_sha="c" * 40, **fields,
    )  # fmt: skip
    Stage.objects.bulk_create(Stage(deployment=d, name=n, position=i) for i, n in enumerate(STAGE_NAMES))
    return d


@pytest.fixture
def envs(make_environment: Any, repository: Any) -> tuple[Any, Any]:
    return make_environment("dev"), make_environment("live", order=30, approval=True)


def test_requested_fires_for_the_environment_and_the_placement_not_elsewhere(dev, repository, envs):
    dev_env, live_env = envs
    on_dev = channel("on-dev", environments=[dev_env])
    on_placement = channel("on-placement", placements=[Placement.objects.get(environment=dev_env)])
    on_live = channel("on-live", environments=[live_env])
    only_failed = channel("only-failed", environments=[dev_env], events=["failed"])

    d = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")

    assert events_of(on_dev) == ["requested"] and events_of(on_placement) == ["requested"]
    assert events_of(on_live) == [] and events_of(only_failed) == []
    payload = Delivery.objects.filter(channel=on_dev).get().payload
    assert payload["deployment"]["id"] == d.pk and payload["actor"] == "dev"
    assert payload["url"] == f"http://127.0.0.1:8000/deployments/{d.pk}/"
    assert (payload["application"], payload["environment"]) == ("demo", "dev")


@pytest.mark.parametrize(
    ("status", "event"),
    [(Status.SUCCEEDED, "succeeded"), (Status.FAILED, "failed"), (Status.ROLLED_BACK, "rolled_back")],
)
def test_a_finished_run_fires_its_event(dev, repository, envs, status, event):
    dev_env, _ = envs
    c = channel("c", environments=[dev_env])
    d = running(repository, dev_env, dev)
    assert lifecycle.deployment_finish(deployment=d, status=status, token="t")
    assert events_of(c) == [event]
    assert Delivery.objects.get(channel=c).payload["deployment"]["status"] == status


def test_awaiting_approval_approved_and_rejected_fire(dev, release, repository, envs):
    _, live_env = envs
    c = channel("c", environments=[live_env])
    d = running(repository, live_env, dev, image_digest="r/demo@sha256:" + "1" * 64)
    assert lifecycle.deployment_await_approval(deployment=d, token="t")
    services.deployment_approve(user=release, deployment=d)
    assert events_of(c) == ["awaiting_approval", "approved"]
    approved = Delivery.objects.filter(channel=c, event="approved").get()
    assert approved.payload["actor"] == "release"

    other = running(repository, live_env, dev, image_digest="r/demo@sha256:" + "2" * 64)
    lifecycle.deployment_await_approval(deployment=other, token="t")
    services.deployment_reject(user=release, deployment=other, comment="not now")
    assert events_of(c)[-2:] == ["awaiting_approval", "rejected"]


def test_a_cancel_fires_cancelled(dev, repository, envs):
    dev_env, _ = envs
    c = channel("c", environments=[dev_env])
    d = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    services.deployment_cancel(user=dev, deployment=d)
    assert events_of(c) == ["requested", "cancelled"]


def test_lock_changes_of_an_environment_reach_its_placements_subscribers(release, repository, envs):
    dev_env, live_env = envs
    on_dev = channel("on-dev", environments=[dev_env])
    on_dev_placement = channel("on-dev-placement", placements=[Placement.objects.get(environment=dev_env)])
    on_live = channel("on-live", environments=[live_env])

    services.environment_lock(user=release, environment=dev_env, reason="release party")
    services.environment_unlock(user=release, environment=dev_env)

    assert events_of(on_dev) == events_of(on_dev_placement) == ["lock_changed", "lock_changed"]
    assert events_of(on_live) == []
    locked, unlocked = (d.payload["lock"] for d in Delivery.objects.filter(channel=on_dev).order_by("id"))
    assert locked == {"scope": "environment", "locked": True, "reason": "release party", "by": "release"}
    assert unlocked["locked"] is False


def test_a_placement_lock_reaches_that_placement_and_its_environment_only(
    release, repository, make_environment
):
    dev_env = make_environment("dev")
    other = type(repository).objects.create(name="other", git_url="https://git.invalid/o.git", image_name="o")
    mine = Placement.objects.get(environment=dev_env, repository=repository)
    theirs = Placement.objects.create(environment=dev_env, repository=other)
    on_mine, on_theirs = channel("mine", placements=[mine]), channel("theirs", placements=[theirs])
    on_env = channel("env", environments=[dev_env])

    services.placement_lock(user=release, placement=mine, reason="hotfix")

    assert events_of(on_mine) == events_of(on_env) == ["lock_changed"]
    assert events_of(on_theirs) == []
    assert Delivery.objects.get(channel=on_mine).payload["lock"]["scope"] == "placement"


def test_commit_status_channels_hear_their_own_application_with_a_commit_only(dev, repository, envs):
    dev_env, _ = envs
    other = type(repository).objects.create(name="other", git_url="https://git.invalid/o.git", image_name="o")
    Placement.objects.create(environment=dev_env, repository=other)
    gh = channel("gh", kind="github", url="https://api.github.com", repository=repository,
                 environments=[dev_env], events=["requested", "succeeded"])  # fmt: skip

    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    assert events_of(gh) == []  # a branch: no commit yet
    assert lifecycle.deployment_finish(
        deployment=running(repository, dev_env, dev), status="succeeded", token="t"
    )
    assert events_of(gh) == ["succeeded"]
    lifecycle.deployment_finish(deployment=running(other, dev_env, dev), status="succeeded", token="t")
    assert events_of(gh) == ["succeeded"]


def test_a_disabled_channel_gets_nothing(dev, repository, envs):
    dev_env, _ = envs
    c = channel("c", environments=[dev_env], enabled=False)
    services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    assert events_of(c) == []


def test_a_requeue_by_the_reaper_is_not_news(dev, repository, envs):
    _, live_env = envs
    c = channel("c", environments=[live_env])
    d = running(repository, live_env, dev)
    with transaction.atomic():
        lifecycle.transition(
            d, Status.APPROVED, expect={"status": Status.RUNNING}, action="deployment.requeue"
        )
    assert events_of(c) == []


def test_a_failing_hook_does_not_fail_the_transition(dev, repository, envs, monkeypatch, caplog):
    dev_env, _ = envs
    channel("c", environments=[dev_env])

    def broken(*args: Any) -> None:
        Delivery.objects.create(channel=Channel.objects.get(), event="x", payload={})
        with connection.cursor() as cursor:  # a database error inside the caller's transaction
            cursor.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(hooks, "_deployment_event", broken)
    d = running(repository, dev_env, dev)
    with transaction.atomic():
        assert lifecycle.deployment_finish(deployment=d, status="succeeded", token="t")
        d.refresh_from_db()  # the transaction is still usable
    assert d.status == Status.SUCCEEDED
    assert "could not record succeeded of deployment" in caplog.text
    assert not Delivery.objects.exists()


def test_deliveries_are_published_on_commit_to_the_notifications_queue(
    dev, repository, envs, django_capture_on_commit_callbacks, monkeypatch
):
    dev_env, _ = envs
    c = channel("c", environments=[dev_env])
    published: list[int] = []
    monkeypatch.setattr(hooks, "publish", lambda pk, countdown=0: published.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    assert published == [Delivery.objects.get(channel=c).pk]
    from django.conf import settings

    assert settings.CELERY_TASK_ROUTES["deployments.notifications.tasks.*"] == {"queue": "notifications"}
