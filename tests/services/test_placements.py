"""Two applications in one environment, each on its own placement: real worker,
Docker engine and registry. A deployment that ran nothing never reads Succeeded."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from deployments import services
from deployments.demo_app import create_hello_repo
from deployments.models import Placement, Repository, Status
from tests.conftest import place
from tests.live import free_port
from tests.services.test_deployment_run import FINAL, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hello(tmp_path: Path) -> Repository:
    path = create_hello_repo(tmp_path / "hello")
    return Repository.objects.create(
        name="hello", git_url=str(path), test_command="sh /app/test.sh", image_name="shipmate-test/hello"
    )


def page(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()


def test_two_applications_in_one_environment_each_serve_their_own_page(
    celery_worker, dev, repository, hello, dev_env
):
    demo_port = dev_env.target_settings["port"]
    hello_port = free_port()
    place(hello, dev_env, target_settings={"port": hello_port})

    first = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")
    second = services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main")
    first, second = wait_for(first, FINAL), wait_for(second, FINAL)

    assert (first.status, second.status) == (Status.SUCCEEDED, Status.SUCCEEDED), (first.error, second.error)
    assert "Hello from Shipmate demo" in page(demo_port)
    assert "Hello from the hello app" in page(hello_port)


def test_an_application_deploys_only_where_it_is_placed(dev, repository, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    with pytest.raises(services.DeployRefused, match="hello is not placed in dev"):
        services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main")
    place(hello, dev_env, target_settings={"port": free_port()}, enabled=False)
    with pytest.raises(services.DeployRefused, match="hello is not placed in dev"):
        services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main")


def test_two_placements_cannot_share_a_port_on_one_engine(repository, hello, dev_env, make_environment):
    stage = make_environment("stage", order=20)
    clash = Placement(
        repository=hello, environment=stage, target_settings={"port": dev_env.target_settings["port"]}
    )
    with pytest.raises(ValidationError) as refused:
        clash.full_clean()
    assert f"demo in dev already uses this port (docker, , {dev_env.target_settings['port']})" in str(
        refused.value
    )


def test_a_deployment_onto_a_port_another_application_holds_fails_and_names_it(
    celery_worker, dev, repository, hello, dev_env
):
    demo = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main"), FINAL
    )
    assert demo.status == Status.SUCCEEDED, demo.error
    # Saved without clean(): what an old install or a hand-edited database may hold.
    place(hello, dev_env, target_settings={"port": dev_env.target_settings["port"]})

    d = wait_for(
        services.deployment_request(user=dev, repository=hello, environment=dev_env, ref="main"), FINAL
    )

    assert d.status != Status.SUCCEEDED
    assert "is already in use by container shipmate-demo-dev (pid " in d.error
    assert "Hello from Shipmate demo" in page(dev_env.target_settings["port"])


def test_a_placement_naming_another_ones_kubernetes_deployment_is_refused(
    repository, hello, make_environment
):
    cluster = make_environment(
        "k8s", order=40, target_kind="kubernetes", target_settings={"namespace": "shop", "port": None}
    )
    Placement.objects.filter(environment=cluster).delete()
    place(repository, cluster, target_settings={"deployment": "web", "container": "app"})
    own = Placement(
        repository=hello, environment=cluster, target_settings={"deployment": "api", "container": "app"}
    )
    own.full_clean()  # its own Deployment: fine
    clash = Placement(
        repository=hello, environment=cluster, target_settings={"deployment": "web", "container": "app"}
    )
    with pytest.raises(ValidationError) as refused:
        clash.full_clean()
    assert "demo in k8s already uses this Deployment/container (kubernetes, shop, web, app)" in str(
        refused.value
    )


def test_a_placement_may_not_bind_mount_outside_the_allowed_directories(repository, dev_env, settings):
    settings.BIND_MOUNT_ROOTS = ["/srv/apps"]
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    placement.target_settings = {"volumes": ["/etc:/host-etc"]}
    with pytest.raises(ValidationError, match="bind mount /etc is not under an allowed directory"):
        placement.full_clean()
    placement.target_settings = {"volumes": ["shop-data:/data", "/srv/apps/shop:/uploads"]}
    placement.full_clean()


def test_a_placements_own_variables_override_the_environments_and_reach_its_container(
    celery_worker, dev, repository, dev_env, docker_engine
):
    from deployments.models import PlacementVariable

    dev_env.variables.create(name="GREETING", plain_value="from the environment")
    dev_env.variables.create(name="SHARED", plain_value="kept")
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    before = placement.config_hash()
    own = PlacementVariable(placement=placement, name="GREETING")
    own.set_value("from the placement")
    own.save()
    token = PlacementVariable(placement=placement, name="APP_TOKEN", is_secret=True)
    token.set_value("placement-secret-42")
    token.save()
    assert placement.config_hash() != before  # an approval bound to the old configuration is void

    d = wait_for(
        services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main"), FINAL
    )

    assert d.status == Status.SUCCEEDED, d.error
    env = docker_engine.containers.get("shipmate-demo-dev").attrs["Config"]["Env"]
    assert (
        "GREETING=from the placement" in env
        and "SHARED=kept" in env
        and "APP_TOKEN=placement-secret-42" in env
    )
    assert "placement-secret-42" in placement.secret_values()
    assert d.config_hash == placement.config_hash()
