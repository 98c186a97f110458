"""A lock on one application in one environment holds only that placement."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from deployments import services
from deployments.models import AuditEvent, Deployment, Placement, Repository
from deployments.services import lifecycle
from tests.conftest import place
from tests.live import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def hello(dev_env) -> Repository:
    repo = Repository.objects.create(name="hello", git_url="/srv/hello", image_name="x/hello")
    place(repo, dev_env, target_settings={"port": free_port()})
    return repo


def test_a_locked_placement_refuses_deploys_while_the_other_application_deploys(
    dev, release, repository, hello, dev_env
):
    demo = Placement.objects.get(repository=repository, environment=dev_env)
    services.placement_lock(user=release, placement=demo, reason="data migration running")

    with pytest.raises(
        services.DeployRefused, match="demo in dev is locked by release: data migration running"
    ):
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    assert services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main").pk
    assert AuditEvent.objects.filter(action="placement.lock", object_id=str(demo.pk)).exists()

    services.placement_unlock(user=release, placement=demo)
    assert services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main").pk
    assert AuditEvent.objects.filter(action="placement.unlock", object_id=str(demo.pk)).exists()


def test_a_lock_holds_what_was_already_queued_for_that_placement(dev, release, repository, hello, dev_env):
    waiting = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    other = services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main")
    demo = Placement.objects.get(repository=repository, environment=dev_env)
    services.placement_lock(user=release, placement=demo, reason="hold")

    assert lifecycle.deployment_claim(deployment_id=waiting.pk, worker="w") is None
    assert lifecycle.deployment_claim(deployment_id=other.pk, worker="w") is not None
    assert Deployment.objects.get(pk=waiting.pk).status == "queued"


def test_a_developer_cannot_lock_a_placement(dev, repository, dev_env):
    client = Client()
    client.force_login(dev)
    response = client.post(reverse("placement_lock", args=["demo", "dev"]), {"reason": "mine"}, follow=True)
    assert "You may not lock demo in dev" in response.content.decode()
    assert not Placement.objects.get(repository=repository, environment=dev_env).is_locked
