"""Placing applications in environments from Manage and the Django admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from deployments.models import AuditEvent, Placement, Repository

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
            "target_settings": '{"port": 18555}',
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
        reverse("manage_placement_new"),
        {"repository": hello.pk, "environment": dev_env.pk, "target_settings": "{}", "enabled": "on"},
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
    assert login(dev).post(url, {"target_settings": '{"port": 1}'}).status_code == 403


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
