"""Approvals bind commit, digest and configuration; they expire; the worker checks again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import services
from deployments.execution import execute
from deployments.models import Approval, AuditEvent, Deployment, Stage, Status
from deployments.models.deployment import STAGE_NAMES
from deployments.services import lifecycle

pytestmark = pytest.mark.django_db

DIGEST = "127.0.0.1:5001/shipmate-test/demo@sha256:" + "1" * 64


def awaiting(repository, env, user, **fields) -> Deployment:
    d = Deployment.objects.create(
        repository=repository,
        environment=env,
        ref="main",
        requested_by=user,
        status=Status.AWAITING_APPROVAL,
        commit_sha="c" * 40,
        image_digest=DIGEST,
        **fields,
    )
    Stage.objects.bulk_create(Stage(deployment=d, name=n, position=i) for i, n in enumerate(STAGE_NAMES))
    return d


def test_release_manager_approval_makes_the_deployment_ready_to_roll_out(dev, release, repository, live_env):
    d = awaiting(repository, live_env, dev)
    services.deployment_approve(user=release, deployment=d, comment="looks good")
    d.refresh_from_db()
    assert d.status == Status.APPROVED
    approval = Approval.objects.get()
    assert (approval.commit_sha, approval.image_digest) == (d.commit_sha, d.image_digest)
    assert approval.config_hash == live_env.placements.get(repository=d.repository).config_hash()
    assert lifecycle.deployment_gate(deployment=d)[0] is None
    assert AuditEvent.objects.filter(action="deployment.approve", actor=release).exists()


def test_developer_cannot_approve_own_deployment(release, repository, live_env):
    d = awaiting(repository, live_env, release)
    with pytest.raises(services.DeployRefused, match="own deployment"):
        services.deployment_approve(user=release, deployment=d)
    assert not Approval.objects.exists()


def test_self_approval_works_only_when_the_policy_allows_it(release, repository, live_env):
    live_env.allow_self_approval = True
    live_env.save()
    d = awaiting(repository, live_env, release)
    services.deployment_approve(user=release, deployment=d)
    d.refresh_from_db()
    assert d.status == Status.APPROVED


def test_developer_cannot_approve_at_all(dev, dev2, repository, live_env):
    d = awaiting(repository, live_env, dev2)
    with pytest.raises(services.DeployRefused, match="may not approve"):
        services.deployment_approve(user=dev, deployment=d)


def test_two_approvals_needed_means_two_distinct_people(dev, release, release2, repository, live_env):
    live_env.approvals_required = 2
    live_env.save()
    d = awaiting(repository, live_env, dev)
    services.deployment_approve(user=release, deployment=d)
    d.refresh_from_db()
    assert d.status == Status.AWAITING_APPROVAL
    services.deployment_approve(user=release, deployment=d)
    d.refresh_from_db()
    assert d.status == Status.AWAITING_APPROVAL
    services.deployment_approve(user=release2, deployment=d)
    d.refresh_from_db()
    assert d.status == Status.APPROVED


def test_a_new_digest_voids_the_approval(dev, release, repository, live_env):
    d = awaiting(repository, live_env, dev)
    services.deployment_approve(user=release, deployment=d)
    Deployment.objects.filter(pk=d.pk).update(image_digest=DIGEST.replace("1" * 64, "2" * 64))
    d.refresh_from_db()
    assert "needs 1 valid approval" in lifecycle.deployment_gate(deployment=d)[0]


def test_a_configuration_change_voids_the_approval(dev, release, repository, live_env):
    d = awaiting(repository, live_env, dev)
    services.deployment_approve(user=release, deployment=d)
    var = live_env.variables.create(name="FEATURE", is_secret=True)
    var.set_value("on")
    var.save()
    assert lifecycle.deployment_gate(deployment=d)[0] is not None


def test_an_expired_approval_cannot_be_used(dev, release, repository, live_env):
    d = awaiting(repository, live_env, dev)
    services.deployment_approve(user=release, deployment=d)
    Approval.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.deployment_gate(deployment=d)[0] is not None


def test_rejection_ends_the_deployment_with_the_reason(dev, release, repository, live_env):
    d = awaiting(repository, live_env, dev)
    with pytest.raises(services.DeployRefused):
        services.deployment_reject(user=release, deployment=d, comment="")
    services.deployment_reject(user=release, deployment=d, comment="not during the sale")
    d.refresh_from_db()
    assert d.status == Status.REJECTED and "not during the sale" in d.error and d.finished_at


@pytest.mark.django_db(transaction=True)
def test_worker_refuses_a_forged_task_for_an_unapproved_deployment(dev, repository, live_env, docker_engine):
    # A message for a deployment still waiting for people: nothing to claim.
    d = awaiting(repository, live_env, dev)
    assert execute(d.pk, worker="forged") == "not claimed"
    # Even if someone flips the row to "approved" behind Shipmate's back, the
    # gate inside the worker finds no valid approval, does not roll out, and
    # hands the deployment back to the approvers.
    Deployment.objects.filter(pk=d.pk).update(status=Status.APPROVED)
    assert execute(d.pk, worker="forged") == Status.AWAITING_APPROVAL
    d.refresh_from_db()
    assert d.status == Status.AWAITING_APPROVAL
    assert d.stages.get(name="rollout").status == "pending"
    voided = AuditEvent.objects.get(action="deployment.approval_voided", object_id=str(d.pk))
    assert "needs 1 valid approval" in voided.details["reason"]
    name = f"shipmate-{repository.name}-{live_env.name}"
    assert not docker_engine.containers.list(all=True, filters={"name": name})


def test_awaiting_approval_is_never_cancelled_by_a_newer_request(dev, repository, live_env):
    d = awaiting(repository, live_env, dev)
    newer = services.deployment_request(user=dev, repository=repository, environment=live_env, ref="main")
    d.refresh_from_db()
    assert d.status == Status.AWAITING_APPROVAL
    assert newer.status == Status.QUEUED
