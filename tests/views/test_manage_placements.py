"""Placing applications in environments from Manage and the Django admin."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from deployments.models import AuditEvent, Placement, Repository
from deployments.pipeline.targets.settings import DockerSettings, KubernetesSettings

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def hello(db) -> Repository:
    return Repository.objects.create(name="hello", git_url="/srv/hello", image_name="x/hello")


def test_an_admin_places_an_application_with_its_own_port_and_it_is_audited(admin, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    response = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": hello.pk,
            "environment": dev_env.pk,
            "port": "18555",
            "public_url": "http://127.0.0.1:18555/",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    placement = Placement.objects.get(repository=hello, environment=dev_env)
    assert placement.effective_settings["port"] == 18555
    event = AuditEvent.objects.get(action="placement.create")
    assert event.details["repository"] == "hello" and event.details["target_settings"] == {"port": 18555}
    assert "hello" in login(admin).get(reverse("manage_home")).content.decode()


def test_a_port_another_placement_uses_is_refused_with_its_name(admin, repository, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    response = login(admin).post(
        reverse("manage_placement_new"), {"repository": hello.pk, "environment": dev_env.pk, "enabled": "on"}
    )
    assert response.status_code == 400
    assert "demo in dev already uses this port" in response.content.decode()
    assert not Placement.objects.filter(repository=hello).exists()


def test_the_django_admin_applies_the_same_check(admin, repository, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    User.objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)
    response = login(User.objects.get(pk=admin.pk)).post(
        reverse("admin:deployments_placement_add"),
        {"repository": hello.pk, "environment": dev_env.pk, "target_settings": "{}", "enabled": "on"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "demo in dev already uses this port" in response.content.decode()
    assert not Placement.objects.filter(repository=hello).exists()


def test_only_admins_manage_placements(dev, repository, dev_env):
    assert login(dev).get(reverse("manage_placement_new")).status_code == 403
    url = reverse("manage_placement_edit", args=["demo", "dev"])
    assert login(dev).post(url, {"port": "1"}).status_code == 403


def test_an_admin_sets_a_placement_variable_that_overrides_the_environments(admin, dev, repository, dev_env):
    dev_env.variables.create(name="GREETING", plain_value="shared")
    url = reverse("manage_placement_variable_set", args=["demo", "dev"])
    response = login(admin).post(url, {"name": "GREETING", "value": "own", "is_secret": ""})
    assert response.status_code == 302
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    assert {v.name: v.value for v in placement.config_variables()} == {"GREETING": "own"}
    page = login(admin).get(reverse("manage_placement_edit", args=["demo", "dev"])).content.decode()
    assert "<code>own</code>" in page and "Shared by dev: <code>GREETING</code>" in page
    assert AuditEvent.objects.filter(action="variable.set", details__variable="GREETING").exists()
    assert login(dev).post(url, {"name": "X", "value": "y"}).status_code == 403


# -- the settings form: one input per setting of the environment's target kind ------------------


@pytest.fixture
def cluster(repository, make_environment):
    """A Kubernetes environment sharing its namespace; demo runs Deployment web there."""
    env = make_environment(
        "k8s", order=40, target_kind="kubernetes", target_settings={"namespace": "shop", "port": None}
    )
    Placement.objects.filter(repository=repository, environment=env).update(
        target_settings={"deployment": "web", "container": "app"}
    )
    return env


def superuser(user: User) -> Client:
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    return login(User.objects.get(pk=user.pk))


def names(page: str) -> set[str]:
    return set(re.findall(r'name="([a-z_]+)"', page))


def placeholder(page: str, name: str) -> str | None:
    tag = re.search(rf'<(?:input|textarea)[^>]* name="{name}"[^>]*>', page)
    found = re.search(r'placeholder="([^"]*)"', tag.group(0)) if tag else None
    return found.group(1) if found else None


def test_the_placement_form_has_one_input_per_docker_setting_with_the_environments_values_as_placeholders(
    admin, repository, dev_env
):
    page = login(admin).get(reverse("manage_placement_edit", args=["demo", "dev"])).content.decode()
    settings = {info.name for info in DockerSettings.describe()}
    assert settings <= names(page)
    assert not {info.name for info in KubernetesSettings.describe()} & names(page)
    assert 'name="target_settings"' not in page  # no JSON to type
    assert placeholder(page, "port") == str(dev_env.target_settings["port"])
    assert placeholder(page, "health_timeout") == "15"  # the environment's, not the default 30
    assert placeholder(page, "bind_host") == "127.0.0.1"  # the default: nothing to inherit


def test_the_placement_form_has_one_input_per_kubernetes_setting(admin, cluster):
    page = login(admin).get(reverse("manage_placement_new") + "?environment=k8s").content.decode()
    assert {info.name for info in KubernetesSettings.describe()} <= names(page)
    assert "port" not in names(page) and "volumes" not in names(page)
    assert placeholder(page, "namespace") == "shop"
    assert '<option value="" selected>Inherit (no)</option>' in page  # in_cluster


def test_the_placement_form_saves_typed_docker_settings(admin, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    response = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": hello.pk,
            "environment": dev_env.pk,
            "port": "18556",
            "container_port": "80",
            "health_timeout": "12.5",
            "health_path": "",  # inherits the environment's
            "volumes": "hello-data:/data\r\nhello-logs:/logs\r\n",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    placement = Placement.objects.get(repository=hello, environment=dev_env)
    assert placement.target_settings == {
        "port": 18556,
        "container_port": 80,
        "health_timeout": 12.5,
        "volumes": ["hello-data:/data", "hello-logs:/logs"],
    }
    config = placement.target_config()
    assert (config.port, config.health_path, config.volumes) == (
        18556,
        "/healthz",
        ("hello-data:/data", "hello-logs:/logs"),
    )


def test_the_placement_form_saves_typed_kubernetes_settings_over_the_environments(admin, hello, cluster):
    Placement.objects.filter(repository=hello).delete()
    response = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": hello.pk,
            "environment": cluster.pk,
            "deployment": "api",
            "container": "app",
            "max_restarts": "5",
            "in_cluster": "true",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    placement = Placement.objects.get(repository=hello, environment=cluster)
    assert placement.target_settings == {
        "deployment": "api",
        "container": "app",
        "max_restarts": 5,
        "in_cluster": True,
    }
    assert placement.target_config().namespace == "shop"  # inherited


def test_editing_a_placement_keeps_keys_no_form_knows(admin, repository, dev_env):
    placement = Placement.objects.get(repository=repository, environment=dev_env)
    placement.target_settings = {"health_path": "/ready", "note": "set in the admin"}
    placement.save()
    response = login(admin).post(
        reverse("manage_placement_edit", args=["demo", "dev"]), {"health_path": "/up", "enabled": "on"}
    )
    assert response.status_code == 302
    placement.refresh_from_db()
    assert placement.target_settings == {"health_path": "/up", "note": "set in the admin"}


def test_the_form_and_the_django_admin_refuse_a_bad_setting_with_the_same_message(admin, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    message = escape("health_path must be a path starting with '/', not 'healthz'")
    form = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": hello.pk,
            "environment": dev_env.pk,
            "port": "18557",
            "health_path": "healthz",
            "enabled": "on",
        },
    )
    assert form.status_code == 400
    assert f'id="health_path-errors">{message}</div>' in form.content.decode()  # next to its input
    admin_page = superuser(admin).post(
        reverse("admin:deployments_placement_add"),
        {
            "repository": hello.pk,
            "environment": dev_env.pk,
            "target_settings": '{"port": 18557, "health_path": "healthz"}',
            "enabled": "on",
        },
    )
    assert admin_page.status_code == 200 and message in admin_page.content.decode()
    assert not Placement.objects.filter(repository=hello).exists()


def test_the_form_shows_a_port_clash_next_to_the_port(admin, repository, hello, dev_env):
    Placement.objects.filter(repository=hello).delete()
    port = dev_env.target_settings["port"]
    response = login(admin).post(
        reverse("manage_placement_new"),
        {"repository": hello.pk, "environment": dev_env.pk, "port": str(port), "enabled": "on"},
    )
    assert response.status_code == 400
    assert (
        f'id="port-errors">demo in dev already uses this port (docker, , {port}).</div>'
        in response.content.decode()
    )


def test_a_deployment_another_placement_uses_is_refused_naming_it_in_the_form_and_the_admin(
    admin, repository, hello, cluster
):
    Placement.objects.filter(repository=hello).delete()
    message = "demo in k8s already uses this Deployment/container (kubernetes, shop, web, app)."
    form = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": hello.pk,
            "environment": cluster.pk,
            "deployment": "web",
            "container": "app",
            "enabled": "on",
        },
    )
    assert form.status_code == 400
    assert f'id="deployment-errors">{message}</div>' in form.content.decode()
    admin_page = superuser(admin).post(
        reverse("admin:deployments_placement_add"),
        {
            "repository": hello.pk,
            "environment": cluster.pk,
            "target_settings": '{"deployment": "web", "container": "app"}',
            "enabled": "on",
        },
    )
    assert admin_page.status_code == 200 and message in admin_page.content.decode()
    assert not Placement.objects.filter(repository=hello).exists()
