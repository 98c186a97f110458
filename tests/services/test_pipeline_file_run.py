"""shipmate.yaml read at the commit being built, through a real worker, Docker engine
and registry: it changes the build and the tests, and cannot touch anything else."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from deployments import services
from deployments.demo_app import _git, add_commit, create_demo_repo
from deployments.models import LogLine, Repository, Status
from tests.conftest import place
from tests.services.test_deployment_run import FINAL, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ARG FLAVOUR=plain
COPY www /www
RUN echo "$FLAVOUR" > /www/flavour
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "exec busybox httpd -f -p 127.0.0.1:${PORT:-8080} -h /www"]
"""

SHIPMATE_YAML = """\
version: 1
build:
  dockerfile: docker/Dockerfile
  args:
    FLAVOUR: mint
test:
  command: sh -c 'echo custom suite ran with $(cat /www/flavour)'
health_path: /ready
smoke_path: /flavour
"""


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    return create_demo_repo(tmp_path / "app")


@pytest.fixture
def app(app_repo: Path) -> Repository:
    return Repository.objects.create(
        name="yaml-app",
        git_url=str(app_repo),
        test_command="sh /app/test.sh",
        image_name="shipmate-test/yaml-app",
    )


def log_text(deployment) -> str:
    return "\n".join(LogLine.objects.filter(deployment=deployment).values_list("text", flat=True))


def test_the_commits_file_changes_the_build_the_tests_and_the_checks(
    celery_worker, dev, app, app_repo, make_environment
):
    dev_env, stage_env = make_environment("dev"), make_environment("stage", order=20)
    place(app, dev_env, stage_env)
    # No /healthz at this commit: only the file's health path can pass.
    _git(app_repo, "rm", "-q", "www/healthz")
    add_commit(
        app_repo,
        "Build with shipmate.yaml",
        {"shipmate.yaml": SHIPMATE_YAML, "docker/Dockerfile": DOCKERFILE, "www/ready": "ok"},
    )

    d = wait_for(
        services.deployment_request(user=dev, repository=app, environment=dev_env, ref="main"), FINAL
    )

    assert d.status == Status.SUCCEEDED, d.error
    text = log_text(d)
    assert "custom suite ran with mint" in text  # the file's test command, in the file's image
    assert "all demo tests passed" not in text  # not the repository's test command
    assert f"http://127.0.0.1:{dev_env.target_settings['port']}/ready answered HTTP 200" in text
    assert d.stages.get(name="verify").status == "succeeded"
    served = urllib.request.urlopen(f"http://127.0.0.1:{dev_env.target_settings['port']}/flavour", timeout=5)
    assert served.read().decode().strip() == "mint"  # the build argument reached the build
    assert d.pipeline_file == {
        "build.dockerfile": "docker/Dockerfile",
        "build.args": {"FLAVOUR": "mint"},
        "test.command": "sh -c 'echo custom suite ran with $(cat /www/flavour)'",
        "health_path": "/ready",
        "smoke_path": "/flavour",
    }
    client = Client()
    client.force_login(dev)
    page = client.get(f"/deployments/{d.pk}/").content.decode()
    assert (
        'id="pipeline-file"' in page
        and "<code>build.dockerfile</code> = <code>docker/Dockerfile</code>" in page
    )

    # The same commit to stage reuses the image, and with it the file's health path
    # (this commit has no /healthz, so the repository's default would fail).
    again = wait_for(
        services.deployment_request(user=dev, repository=app, environment=stage_env, ref="main"), FINAL
    )
    assert again.status == Status.SUCCEEDED, again.error
    assert again.stages.get(name="build").status == "skipped"
    assert again.pipeline_file == d.pipeline_file


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "test:\n  command: ok\nbuild:\n  dockerfile: ../outside\n",
            "shipmate.yaml line 4: build.dockerfile must be a path inside",
        ),
        (
            "version: 1\nvariables:\n  DEBUG: '1'\n",
            "shipmate.yaml line 2: `variables` is not allowed in shipmate.yaml",
        ),
        (
            "version: 1\npolicy:\n  approvals_required: 0\n",
            "shipmate.yaml line 2: `policy` is not allowed in shipmate.yaml",
        ),
        ("build:\n  dockerfile: [x\n", "shipmate.yaml line 3: not valid YAML"),
    ],
)
def test_a_bad_or_overreaching_file_fails_the_checkout_with_its_line(
    celery_worker, dev, app, app_repo, dev_env, content, message
):
    add_commit(app_repo, "Add shipmate.yaml", {"shipmate.yaml": content})

    d = wait_for(
        services.deployment_request(user=dev, repository=app, environment=dev_env, ref="main"), FINAL
    )

    assert d.status == Status.FAILED
    assert d.error.startswith(message)
    stages = {s.name: s.status for s in d.stages.all()}
    assert stages["checkout"] == "failed" and stages["build"] != "succeeded"
