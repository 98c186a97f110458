"""Whole deployments through a real Celery worker, Redis, Docker engine and registry."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from typing import Any

import pytest
from django.conf import settings

from deployments import services
from deployments.models import AuditEvent, Deployment, LogLine, Status


def wait_for(deployment: Deployment, statuses: set[str], timeout: float = 90) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.refresh_from_db()
        if deployment.status in statuses:
            return deployment
        time.sleep(0.2)
    raise AssertionError(f"#{deployment.pk} still {deployment.status} after {timeout} s: {deployment.error}")


FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ROLLED_BACK, Status.REJECTED}


def head(repo: Any, ref: str = "main") -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.django_db(transaction=True)
def test_developer_deploys_demo_to_dev_and_the_app_serves_it(
    celery_worker, dev, repository, dev_env, demo_repo_path
):
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    deployment = wait_for(deployment, FINAL)

    assert deployment.status == Status.SUCCEEDED, deployment.error
    assert deployment.commit_sha == head(demo_repo_path)
    committed = subprocess.run(
        ["git", "-C", str(demo_repo_path), "log", "-1", "--format=%ct", "main"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(deployment.committed_at.timestamp()) == int(committed)  # lead time starts here
    assert deployment.image_digest.startswith(f"{settings.REGISTRY}/shipmate-test/demo@sha256:")
    stages = {s.name: s.status for s in deployment.stages.all()}
    assert stages == {
        "checkout": "succeeded",
        "build": "succeeded",
        "test": "succeeded",
        "push": "succeeded",
        "approval": "skipped",
        "rollout": "succeeded",
        "verify": "skipped",
    }
    assert all(s.started_at and s.finished_at for s in deployment.stages.exclude(status="skipped"))
    page = urllib.request.urlopen(f"http://127.0.0.1:{dev_env.target_settings['port']}/", timeout=5).read()
    assert b"Hello from Shipmate demo" in page
    text = "\n".join(LogLine.objects.filter(deployment=deployment).values_list("text", flat=True))
    assert "all demo tests passed" in text
    actions = list(AuditEvent.objects.filter(object_id=str(deployment.pk)).values_list("action", flat=True))
    assert "deployment.click" in actions and "deployment.succeeded" in actions


@pytest.mark.django_db(transaction=True)
def test_second_deploy_of_the_same_commit_reuses_the_image(celery_worker, dev, repository, make_environment):
    dev_env, stage_env = make_environment("dev"), make_environment("stage", order=20)
    first = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main"), FINAL
    )
    second = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=stage_env, ref="main"), FINAL
    )
    assert first.status == second.status == Status.SUCCEEDED, second.error
    assert second.image_digest == first.image_digest
    assert second.stages.get(name="build").status == "skipped"
    assert "reusing" in second.stages.get(name="build").note


@pytest.mark.django_db(transaction=True)
def test_live_deployment_waits_for_approval_and_does_not_roll_out(celery_worker, dev, repository, live_env):
    deployment = services.deployment_request(
        user=dev, repository=repository, environment=live_env, ref="v1.0"
    )
    deployment = wait_for(deployment, {Status.AWAITING_APPROVAL} | FINAL)
    assert deployment.status == Status.AWAITING_APPROVAL
    assert deployment.image_digest
    assert deployment.stages.get(name="rollout").status == "pending"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{live_env.target_settings['port']}/", timeout=2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ref": "no-such-branch"}, "does not exist"),
        ({"dockerfile_path": "../outside/Dockerfile"}, "outside the repository"),
        ({"files": {"Dockerfile": 'FROM scratch\nRUN ["/bin/false"]\n'}}, "build"),
        ({"files": {"test.sh": "echo failing on purpose\nexit 3\n"}}, "exit code 3"),
        ({"registry": "127.0.0.1:1", "files": {"www/extra.txt": "x"}}, "push"),
        ({"health_path": "/never-there"}, "health check"),
    ],
    ids=[
        "missing-ref",
        "dockerfile-outside",
        "failing-build",
        "failing-test",
        "registry-down",
        "health-never",
    ],
)
def test_bad_input_fails_with_a_clear_error_and_nothing_stays_running(
    celery_worker, dev, repository, dev_env, tmp_path, change, message, settings
):
    ref = change.get("ref", "main")
    if "files" in change:
        from deployments.demo_app import add_commit, create_demo_repo

        repo = create_demo_repo(tmp_path / "broken")
        add_commit(repo, "break it", change["files"])
        repository.git_url = str(repo)
    if "dockerfile_path" in change:
        repository.dockerfile_path = change["dockerfile_path"]
    repository.save()
    if "registry" in change:
        settings.REGISTRY = change["registry"]
    if "health_path" in change:
        dev_env.target_settings.update(health_path=change["health_path"], health_timeout=3)
        dev_env.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref=ref)
    deployment = wait_for(deployment, FINAL)
    assert deployment.status in {Status.FAILED, Status.ROLLED_BACK}
    assert message in deployment.error
    assert not Deployment.objects.filter(status=Status.RUNNING).exists()
    assert deployment.lease_expires_at is None


@pytest.mark.django_db(transaction=True)
def test_deployment_lists_the_commits_since_what_the_environment_ran(celery_worker, dev, repository, dev_env):
    first = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="v1.0"), FINAL
    )
    second = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main"), FINAL
    )
    assert first.status == second.status == Status.SUCCEEDED, second.error
    assert [c["subject"] for c in second.commits] == ["Show version 2 on the home page"]
    assert second.commits[0]["sha"] == second.commit_sha
    assert second.replaced == first


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_run_that_waits_for_approval_closes_its_approval_stage(
    celery_worker, dev, repository, live_env
):
    deployment = services.deployment_request(
        user=dev, repository=repository, environment=live_env, ref="main"
    )
    deployment = wait_for(deployment, {Status.AWAITING_APPROVAL} | FINAL)
    services.deployment_cancel(user=dev, deployment=deployment)
    deployment.refresh_from_db()
    assert deployment.status == Status.CANCELLED
    assert set(
        deployment.stages.filter(name__in=["approval", "rollout", "verify"]).values_list("status", flat=True)
    ) == {"cancelled"}


@pytest.mark.django_db(transaction=True)
def test_approvers_see_the_commits_even_when_the_image_is_reused(
    celery_worker, dev, repository, dev_env, live_env, demo_repo_path
):
    built = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main"), FINAL
    )
    assert built.status == Status.SUCCEEDED, built.error
    Deployment.objects.create(
        repository=repository,
        environment=live_env,
        ref="v1.0",
        requested_by=dev,
        status=Status.SUCCEEDED,
        commit_sha=head(demo_repo_path, "v1.0^{commit}"),
        image_digest=built.image_digest,
        finished_at=built.finished_at,
    )
    waiting = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=live_env, ref="main"),
        {Status.AWAITING_APPROVAL} | FINAL,
    )
    assert waiting.status == Status.AWAITING_APPROVAL
    assert waiting.stages.get(name="build").status == "skipped"
    assert [c["subject"] for c in waiting.commits] == ["Show version 2 on the home page"]
