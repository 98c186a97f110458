"""What the worker refuses is refused when it is saved, with the worker's message: by
the Manage forms, the Django admin and the YAML apply alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from deployments.models import Environment, Placement, Repository
from deployments.pipeline import git, health
from deployments.pipeline.git import GitError
from deployments.pipeline.outbound import OutboundPolicy
from deployments.services import config
from deployments.services.config import ConfigError

pytestmark = pytest.mark.django_db

# Refused under SHIPMATE_GIT_PROTOCOLS=https and the default outbound policy.
HOSTILE_GIT_URLS = [
    "file:///srv/git/app.git",
    "/srv/git/app.git",
    "FILE:///etc",
    "ssh://-oProxyCommand=x/repo",
    "-oProxyCommand=x:repo",
    "git@-x:repo",
    "ssh://user@-host/repo",
    "ssh://[-oProxyCommand=x]/repo",
    "ssh://-oProxyCommand=x@host/repo",
    "ssh://%2doProxyCommand=x/repo",
    "git+ssh://-x/repo",
    "ssh://host:-1/repo",
    "git@[-x]:repo",
    "ext::sh -c touch% /tmp/pwned",
    "https://169.254.169.254/latest/app.git",
    "https://[::ffff:127.0.0.1]/app.git",
    "https://2130706433/app.git",
    "https://localhost/app.git",
    "https://evil.example#@good.example/app.git",
]


def worker_message(url: str) -> str:
    """What the worker says about `url` with the same settings."""
    with pytest.raises(GitError) as refused:
        git.resolve_ref(url, "main", allowed_protocols=("https",), policy=OutboundPolicy())
    return str(refused.value)


@pytest.fixture
def https_only(settings: Any) -> None:
    settings.GIT_ALLOWED_PROTOCOLS = ["https"]
    settings.OUTBOUND_ALLOW_INTERNAL = []


@pytest.fixture
def root(db: Any) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.test", "pw"))
    return client


def repository_fields(**overrides: str) -> dict[str, str]:
    data = {
        "name": "shop",
        "git_url": "https://git.example.com/shop.git",
        "default_branch": "main",
        "dockerfile_path": "Dockerfile",
        "build_context": ".",
        "test_command": "",
        "image_name": "shipmate/shop",
        "dockerfile_repo_url": "",
        "dockerfile_repo_ref": "",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("url", HOSTILE_GIT_URLS)
@pytest.mark.parametrize("field", ["git_url", "dockerfile_repo_url"])
def test_manage_refuses_a_git_url_the_worker_refuses(
    url: str, field: str, https_only: None, root: Client
) -> None:
    response = root.post(reverse("manage_repository_new"), repository_fields(**{field: url}))

    assert response.status_code == 400
    assert escape(worker_message(url)) in response.content.decode()
    assert not Repository.objects.exists()


@pytest.mark.parametrize("url", HOSTILE_GIT_URLS)
def test_the_admin_refuses_a_git_url_the_worker_refuses(url: str, https_only: None, root: Client) -> None:
    response = root.post(reverse("admin:deployments_repository_add"), repository_fields(git_url=url))

    assert response.status_code == 200
    assert escape(worker_message(url)) in response.content.decode()
    assert not Repository.objects.exists()


@pytest.mark.parametrize("url", HOSTILE_GIT_URLS)
def test_yaml_apply_refuses_a_git_url_the_worker_refuses(url: str, https_only: None) -> None:
    data = {"version": 1, "applications": [{"name": "shop", "git_url": url, "image_name": "x/shop"}]}

    with pytest.raises(ConfigError) as refused:
        config.config_apply(data)

    assert worker_message(url) in str(refused.value)
    assert not Repository.objects.exists()


def test_an_https_url_is_still_saved(https_only: None, root: Client) -> None:
    response = root.post(reverse("manage_repository_new"), repository_fields())

    assert response.status_code == 302
    assert Repository.objects.get().git_url == "https://git.example.com/shop.git"


@pytest.mark.parametrize("ref", ["--upload-pack=touch /tmp/x", "a..b", "-x"])
def test_a_default_branch_the_worker_refuses_is_refused_at_save(ref: str, root: Client) -> None:
    response = root.post(reverse("manage_repository_new"), repository_fields(default_branch=ref))

    with pytest.raises(GitError) as refused:
        git.validate_ref(ref)
    assert escape(str(refused.value)) in response.content.decode()
    assert not Repository.objects.exists()


HOSTILE_SMOKE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://127.0.0.1:8080/healthz",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://[::1]:8080/",
    "http://[::ffff:7f00:1]/",
    "http://localhost:8080/",
    "http://10.0.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0:8080/",
]


def smoke_message(url: str) -> str:
    ok, detail = health.check_url_once(url, 1, policy=OutboundPolicy())
    assert not ok
    return detail


@pytest.mark.parametrize("url", HOSTILE_SMOKE_URLS)
def test_an_internal_smoke_url_is_refused_at_save_with_the_workers_message(
    url: str, https_only: None, root: Client, repository: Repository
) -> None:
    env = Environment.objects.get(name="dev") if Environment.objects.filter(name="dev").exists() else None
    env = env or Environment.objects.create(name="dev", target_kind="kubernetes")
    message = smoke_message(url)

    data = {"version": 1, "environments": [{"name": env.name, "smoke_url": url}]}
    with pytest.raises(ConfigError) as refused:
        config.config_apply(data)
    assert message in str(refused.value)

    placement = Placement(repository=repository, environment=env, smoke_url=url)
    with pytest.raises(Exception) as invalid:
        placement.full_clean()
    assert message in str(invalid.value)


def test_a_loopback_smoke_url_is_saved_when_loopback_is_allowed(repository: Repository) -> None:
    env = Environment.objects.create(name="qa", target_kind="kubernetes", smoke_url="http://127.0.0.1:9/")
    env.full_clean()


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "http://"])
def test_a_public_url_that_is_not_an_http_link_is_refused(url: str, repository: Repository) -> None:
    env = Environment.objects.create(name="qa", target_kind="kubernetes")
    placement = Placement(repository=repository, environment=env, public_url=url)

    with pytest.raises(Exception, match="public_url"):
        placement.full_clean()


def test_a_docker_health_host_on_loopback_is_refused_unless_loopback_is_allowed(
    repository: Repository, settings: Any
) -> None:
    env = Environment.objects.create(name="qa", target_kind="docker")
    placement = Placement(repository=repository, environment=env, target_settings={"port": 18123})
    placement.full_clean()  # the tests allow loopback

    settings.OUTBOUND_ALLOW_INTERNAL = []
    with pytest.raises(Exception, match="127.0.0.1: it is a loopback address"):
        placement.full_clean()
