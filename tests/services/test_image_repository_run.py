"""The seed article's layout: application code in one repository, the Dockerfile in
another. A deployment builds the code's commit with the image repository's Dockerfile
and names both commits, on its page and in the image's labels."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import docker
import pytest
from django.test import Client

from deployments import services
from deployments.demo_app import _git, add_commit, create_demo_repo
from deployments.models import Repository, Status
from tests.conftest import place
from tests.services.test_deployment_run import FINAL, head, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

IMAGE_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
COPY test.sh /app/test.sh
RUN echo "built from the image repository" > /www/built-by
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "exec busybox httpd -f -p 127.0.0.1:${PORT:-8080} -h /www"]
"""


@pytest.fixture
def images_repo(tmp_path: Path) -> Path:
    path = tmp_path / "images"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "t")
    _git(path, "config", "user.email", "t@example.invalid")
    add_commit(path, "Image for the app", {"app/Dockerfile": IMAGE_DOCKERFILE})
    return path


def test_code_and_dockerfile_from_two_repositories_are_built_together_and_both_named(
    celery_worker, dev, dev_env, tmp_path, images_repo, docker_engine: docker.DockerClient
):
    code_repo = create_demo_repo(tmp_path / "code")
    app = Repository.objects.create(
        name="split-app",
        git_url=str(code_repo),
        dockerfile_repo_url=str(images_repo),
        dockerfile_repo_ref="main",
        dockerfile_path="app/Dockerfile",
        test_command="sh /app/test.sh",
        image_name="shipmate-test/split-app",
    )
    place(app, dev_env)

    d = wait_for(
        services.deployment_request(user=dev, repository=app, environment=dev_env, ref="main"), FINAL
    )

    assert d.status == Status.SUCCEEDED, d.error
    code_sha, images_sha = head(code_repo), head(images_repo)
    assert (d.commit_sha, d.dockerfile_commit_sha) == (code_sha, images_sha)
    port = dev_env.target_settings["port"]
    built_by = urllib.request.urlopen(f"http://127.0.0.1:{port}/built-by", timeout=5).read().decode()
    assert built_by.strip() == "built from the image repository"
    assert "Version 2" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()

    labels = docker_engine.images.get(d.image_digest).labels
    assert labels["org.opencontainers.image.revision"] == code_sha
    assert labels["dev.shipmate.dockerfile.revision"] == images_sha
    assert labels["dev.shipmate.dockerfile.source"] == str(images_repo)

    client = Client()
    client.force_login(dev)
    page = client.get(f"/deployments/{d.pk}/").content.decode()
    assert code_sha in page
    assert f'app/Dockerfile from {images_repo} at <code class="sha">{images_sha}</code>' in page
