"""The run lifecycle's edges: stale workers, cancels between phases, held queues,
per-repository history, build keys and secrets that cannot be read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import services
from deployments.execution import execute
from deployments.models import Deployment, Repository, Stage, Status
from deployments.models.deployment import STAGE_NAMES
from deployments.services import lifecycle

pytestmark = pytest.mark.django_db

DIGEST = "127.0.0.1:5001/shipmate-test/demo@sha256:"


def queued(repository, env, user, **fields) -> Deployment:
    d = Deployment.objects.create(
        repository=repository, environment=env, ref="main", requested_by=user, **fields
    )
    Stage.objects.bulk_create(Stage(deployment=d, name=n, position=i) for i, n in enumerate(STAGE_NAMES))
    return d


def expire(d: Deployment) -> None:
    Deployment.objects.filter(pk=d.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def test_a_stalled_worker_cannot_overwrite_a_run_the_reaper_took_away(dev, repository, dev_env):
    d = queued(repository, dev_env, dev)
    first, _ = lifecycle.deployment_claim(deployment_id=d.pk, worker="slow")
    expire(d)
    assert lifecycle.reap()["requeued"] == 1
    second, _ = lifecycle.deployment_claim(deployment_id=d.pk, worker="fresh")
    assert first.claim_token != second.claim_token
    assert lifecycle.deployment_heartbeat(deployment_id=d.pk, token=first.claim_token) == (False, False)
    assert (
        lifecycle.deployment_finish(deployment=first, status=Status.SUCCEEDED, token=first.claim_token)
        is False
    )
    d.refresh_from_db()
    assert d.status == Status.RUNNING and d.worker == "fresh"
    assert (
        lifecycle.deployment_finish(deployment=second, status=Status.SUCCEEDED, token=second.claim_token)
        is True
    )


def test_a_cancel_that_arrives_as_the_build_ends_is_not_lost(dev, repository, live_env):
    d = queued(repository, live_env, dev)
    claimed, _ = lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    services.deployment_cancel(user=dev, deployment=claimed)
    lifecycle.deployment_await_approval(deployment=claimed, token=claimed.claim_token)
    d.refresh_from_db()
    assert d.status == Status.CANCELLED
    assert d.error == "Cancelled by dev."


def test_a_queued_run_with_a_cancel_request_is_settled_at_claim(dev, repository, dev_env):
    d = queued(repository, dev_env, dev, cancel_requested=True)
    assert lifecycle.deployment_claim(deployment_id=d.pk, worker="w") is None
    d.refresh_from_db()
    assert d.status == Status.CANCELLED


def test_the_reaper_cancels_a_lost_run_that_was_asked_to_cancel(dev, repository, dev_env):
    d = queued(repository, dev_env, dev)
    lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    Deployment.objects.filter(pk=d.pk).update(cancel_requested=True)
    expire(d)
    assert lifecycle.reap()["cancelled"] == 1
    d.refresh_from_db()
    assert d.status == Status.CANCELLED


def test_a_locked_environment_holds_its_queue_until_unlocked(dev, release, repository, dev_env):
    d = queued(repository, dev_env, dev)
    services.environment_lock(user=release, environment=dev_env, reason="migrating")
    assert lifecycle.deployment_claim(deployment_id=d.pk, worker="w") is None
    d.refresh_from_db()
    assert d.status == Status.QUEUED
    services.environment_unlock(user=release, environment=dev_env)
    assert lifecycle.deployment_claim(deployment_id=d.pk, worker="w") is not None


def test_a_lock_taken_during_the_build_stops_the_rollout(dev, release, repository, dev_env):
    d = queued(repository, dev_env, dev, commit_sha="c" * 40, image_digest=DIGEST + "1" * 64)
    lifecycle.deployment_claim(deployment_id=d.pk, worker="w")
    services.environment_lock(user=release, environment=dev_env, reason="incident")
    reason, _ = lifecycle.deployment_gate(deployment=d)
    assert "locked by release: incident" in reason


def test_break_glass_cannot_be_self_approved_even_where_self_approval_is_allowed(
    release, repository, dev_env
):
    dev_env.allow_self_approval = True
    dev_env.save()
    d = queued(
        repository,
        dev_env,
        release,
        status=Status.AWAITING_APPROVAL,
        break_glass_reason="outage",
        commit_sha="c" * 40,
        image_digest=DIGEST + "2" * 64,
    )
    with pytest.raises(services.DeployRefused, match="own deployment"):
        services.deployment_approve(user=release, deployment=d)


def released(env, user, *releases) -> None:
    """Succeeded deployments of (repository, digit) in `env`, one second apart, in order."""
    now = timezone.now()
    for i, (repo, digit) in enumerate(releases):
        Deployment.objects.create(
            repository=repo,
            environment=env,
            ref="main",
            requested_by=user,
            status=Status.SUCCEEDED,
            commit_sha=digit * 40,
            image_digest=DIGEST + digit * 64,
            finished_at=now + timedelta(seconds=i),
        )


def test_rollback_uses_the_previous_release_of_the_same_repository(dev, repository, dev_env):
    other = Repository.objects.create(name="other", git_url="/srv/other", image_name="x/other")
    released(dev_env, dev, (repository, "a"), (other, "b"), (repository, "c"))
    rollback = services.deployment_rollback(user=dev, environment=dev_env)
    assert rollback.repository == repository
    assert rollback.image_digest == DIGEST + "a" * 64


@pytest.mark.django_db(transaction=True)
def test_a_developers_rollback_of_a_protected_environment_waits_for_an_approver(dev, repository, live_env):
    released(live_env, dev, (repository, "a"), (repository, "b"))
    rollback = services.deployment_rollback(user=dev, environment=live_env)
    assert execute(rollback.pk, worker="w") == Status.AWAITING_APPROVAL
    rollback.refresh_from_db()
    assert rollback.status == Status.AWAITING_APPROVAL, rollback.error
    assert rollback.image_digest == DIGEST + "a" * 64


def test_promotion_only_goes_forward(dev, repository, make_environment):
    dev_env, stage_env = make_environment("dev"), make_environment("stage", order=20)
    Deployment.objects.create(
        repository=repository,
        environment=stage_env,
        ref="main",
        requested_by=dev,
        status=Status.SUCCEEDED,
        commit_sha="d" * 40,
        image_digest=DIGEST + "d" * 64,
        finished_at=timezone.now(),
    )
    with pytest.raises(services.DeployRefused, match="forward only"):
        services.deployment_promote(user=dev, source=stage_env, target=dev_env)


def test_the_build_key_changes_with_what_shapes_the_image():
    repo = Repository(
        name="r", dockerfile_path="Dockerfile", build_context=".", test_command="make test", image_name="r"
    )
    key = repo.build_key
    repo.test_command = "make test-all"
    assert repo.build_key != key


@pytest.mark.django_db(transaction=True)
def test_a_secret_that_cannot_be_decrypted_fails_the_run_instead_of_stranding_it(dev, repository, dev_env):
    variable = dev_env.variables.create(name="TOKEN", is_secret=True, encrypted_value="not-a-fernet-token")
    assert variable.pk
    d = queued(repository, dev_env, dev)
    assert execute(d.pk, worker="w") == Status.FAILED
    d.refresh_from_db()
    assert d.status == Status.FAILED and "cannot be decrypted" in d.error
    assert d.lease_expires_at is None
