"""Every state change leaves an audit event with actor, action, object, commit,
digest, time and source IP; secret values never reach it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.models import AuditEvent, Deployment, FreezeWindow, Stage, Status
from deployments.models.deployment import STAGE_NAMES

pytestmark = pytest.mark.django_db

DIGEST = "127.0.0.1:5001/shipmate-test/demo@sha256:" + "4" * 64


def as_user(user) -> Client:
    client = Client(REMOTE_ADDR="127.0.0.9")
    client.force_login(user)
    return client


def done(repository, env, user, sha: str, digest: str) -> Deployment:
    d = Deployment.objects.create(
        repository=repository,
        environment=env,
        ref="main",
        requested_by=user,
        status=Status.SUCCEEDED,
        commit_sha=sha,
        image_digest=digest,
        finished_at=timezone.now(),
    )
    return d


def waiting(repository, env, user) -> Deployment:
    d = Deployment.objects.create(
        repository=repository,
        environment=env,
        ref="main",
        requested_by=user,
        status=Status.AWAITING_APPROVAL,
        commit_sha="e" * 40,
        image_digest=DIGEST,
    )
    Stage.objects.bulk_create(Stage(deployment=d, name=n, position=i) for i, n in enumerate(STAGE_NAMES))
    return d


def test_every_state_change_through_the_views_is_audited(
    dev, release, admin, repository, dev_env, live_env, django_capture_on_commit_callbacks
):
    dev_c, rel_c, admin_c = as_user(dev), as_user(release), as_user(admin)
    with django_capture_on_commit_callbacks(execute=False):
        # request + cancel
        dev_c.post(reverse("deploy"), {"repository": repository.pk, "environment": dev_env.pk, "ref": "main"})
        queued = Deployment.objects.get(status=Status.QUEUED)
        dev_c.post(reverse("deployment_cancel", args=[queued.pk]))
        # approve + reject
        to_approve, to_reject = waiting(repository, live_env, dev), waiting(repository, live_env, dev)
        rel_c.post(reverse("deployment_approve", args=[to_approve.pk]), {"comment": "ship it"})
        rel_c.post(reverse("deployment_reject", args=[to_reject.pk]), {"comment": "not today"})
        # rollback (needs two earlier successful releases)
        done(repository, dev_env, dev, "a" * 40, DIGEST.replace("4" * 64, "a" * 64))
        done(repository, dev_env, dev, "b" * 40, DIGEST.replace("4" * 64, "b" * 64))
        rel_c.post(reverse("environment_rollback", args=[dev_env.name]))
        # lock + unlock
        rel_c.post(reverse("environment_lock", args=[dev_env.name]), {"reason": "maintenance"})
        rel_c.post(reverse("environment_unlock", args=[dev_env.name]))
        # freeze override (break-glass)
        now = timezone.now()
        FreezeWindow.objects.create(
            environment=dev_env,
            reason="freeze",
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=1),
        )
        dev_c.post(
            reverse("deploy"),
            {
                "repository": repository.pk,
                "environment": dev_env.pk,
                "ref": "main",
                "break_glass_reason": "hotfix",
            },
        )
        # environment, repository and variable changes
        admin_c.post(
            reverse("manage_variable_set", args=[dev_env.name]),
            {"name": "DB_PASSWORD", "value": "hunter2-secret", "is_secret": "on"},
        )
        admin_c.post(
            reverse("manage_repository_edit", args=[repository.name]),
            {
                "git_url": repository.git_url,
                "default_branch": "trunk",
                "dockerfile_path": "Dockerfile",
                "build_context": ".",
                "test_command": repository.test_command,
                "image_name": repository.image_name,
            },
        )
    # login failure
    Client(REMOTE_ADDR="127.0.0.9").post(reverse("login"), {"username": "dev", "password": "nope"})

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    expected = {
        "deployment.click",
        "deployment.cancel",
        "deployment.approve",
        "deployment.reject",
        "deployment.rollback",
        "environment.lock",
        "environment.unlock",
        "deployment.break_glass",
        "variable.set",
        "repository.update",
        "auth.login_failed",
    }
    assert expected <= actions, expected - actions
    for event in AuditEvent.objects.exclude(action="auth.login_failed"):
        assert event.actor_name in {"dev", "release", "admin"}, event
        assert event.source_ip == "127.0.0.9", event
        assert event.object_type and event.created_at
    approve = AuditEvent.objects.get(action="deployment.approve")
    assert approve.commit_sha == "e" * 40 and approve.image_digest == DIGEST
    assert "hunter2-secret" not in str(list(AuditEvent.objects.values()))
