"""The Manage pages through the real views: admins only, inline errors, write-only
secrets and kubeconfigs, audit events, and the target connection check."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from deployments import permissions, urls
from deployments.models import AuditEvent, Environment, FreezeWindow, Repository, Variable
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-VALUE-9f2c"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: kube-TOKEN-77aa}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def login(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def html(response: Any) -> str:
    return response.content.decode()


def env_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "stage",
        "order": "20",
        "target_kind": "docker",
        "port": "18080",
        "network_mode": "host",
        "approvals_required": "1",
        "approval_ttl_minutes": "240",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def repo_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "shop",
        "git_url": "https://git.example.com/shop.git",
        "default_branch": "main",
        "dockerfile_path": "Dockerfile",
        "build_context": ".",
        "image_name": "shipmate/shop",
    }
    data.update(overrides)
    return data


@pytest.fixture
def manage_objects(admin: User, dev: User, repository: Repository, dev_env: Environment) -> dict[str, Any]:
    variable = Variable(environment=dev_env, name="GREETING")
    variable.set_value("hello")
    variable.save()
    window = FreezeWindow.objects.create(
        environment=dev_env,
        kind="weekly",
        reason="Friday",
        weekday=4,
        start_time="16:00",
        duration_minutes=60,
    )
    return {"repository": repository, "env": dev_env, "variable": variable, "window": window, "user": dev}


def url_args(name: str, objects: dict[str, Any]) -> list[Any]:
    env = objects["env"].name
    return {
        "manage_home": [],
        "manage_repository_new": [],
        "manage_repository_edit": [objects["repository"].name],
        "manage_environment_new": [],
        "manage_environment_edit": [env],
        "manage_environment_test_connection": [env],
        "manage_variable_set": [env],
        "manage_variable_delete": [env, objects["variable"].pk],
        "manage_freeze_add": [env],
        "manage_freeze_delete": [env, objects["window"].pk],
        "manage_users": [],
        "manage_user_roles": [objects["user"].pk],
        "manage_placement_new": [],
        "manage_placement_edit": [objects["repository"].name, env],
        "manage_placement_variable_set": [objects["repository"].name, env],
        "manage_placement_variable_delete": [objects["repository"].name, env, 1],
    }[name]


MANAGE_URLS = [
    "manage_home",
    "manage_repository_new",
    "manage_repository_edit",
    "manage_environment_new",
    "manage_environment_edit",
    "manage_environment_test_connection",
    "manage_variable_set",
    "manage_variable_delete",
    "manage_freeze_add",
    "manage_freeze_delete",
    "manage_users",
    "manage_user_roles",
    "manage_placement_new",
    "manage_placement_edit",
    "manage_placement_variable_set",
    "manage_placement_variable_delete",
]


def test_every_manage_url_is_covered_by_the_permission_test():
    names = {p.name for p in urls.manage_urlpatterns if isinstance(p, URLPattern)}
    assert names == set(MANAGE_URLS)


@pytest.mark.parametrize("url_name", MANAGE_URLS)
@pytest.mark.parametrize("role", ["dev", "release", "outsider"])
def test_non_admins_get_403_on_every_manage_url(request, manage_objects, url_name, role):
    user = request.getfixturevalue(role)
    client = login(user)
    url = reverse(url_name, args=url_args(url_name, manage_objects))
    before = AuditEvent.objects.count()
    assert client.get(url).status_code == 403
    post = {"groups": [permissions.ADMINS], "name": "X", "value": "v", "reason": "r", "kind": "weekly"}
    assert client.post(url, post).status_code == 403
    assert AuditEvent.objects.count() == before
    assert Variable.objects.count() == 1 and FreezeWindow.objects.count() == 1
    assert not user.groups.filter(name=permissions.ADMINS).exists()


def test_anonymous_user_is_sent_to_login(client, db):
    response = client.get(reverse("manage_home"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_manage_home_lists_repositories_environments_and_users(admin, dev, repository, dev_env):
    page = html(login(admin).get(reverse("manage_home")))
    assert reverse("manage_repository_edit", args=[repository.name]) in page
    assert reverse("manage_environment_edit", args=[dev_env.name]) in page
    assert "<td>dev" in page and permissions.DEVELOPERS in page


def test_admin_creates_and_edits_a_repository(admin):
    client = login(admin)
    response = client.post(reverse("manage_repository_new"), repo_data())
    assert response.status_code == 302
    repo = Repository.objects.get(name="shop")
    assert repo.image_name == "shipmate/shop"
    assert AuditEvent.objects.filter(action="repository.create", object_id=str(repo.pk), actor=admin).exists()

    edit = reverse("manage_repository_edit", args=["shop"])
    assert 'value="https://git.example.com/shop.git"' in html(client.get(edit))
    response = client.post(edit, repo_data(name="renamed", default_branch="trunk"))
    assert response.status_code == 302
    repo.refresh_from_db()
    assert repo.name == "shop" and repo.default_branch == "trunk"  # the name is fixed once created
    event = AuditEvent.objects.get(action="repository.update")
    assert event.details == {"changed": ["default_branch"]}


@pytest.mark.parametrize(
    "url", ["-oProxyCommand=touch /tmp/pwned", "ext::sh -c touch% /tmp/pwned", "ext::sh"]
)
def test_repository_with_a_dangerous_git_url_is_refused_inline(admin, url):
    response = login(admin).post(reverse("manage_repository_new"), repo_data(git_url=url))
    assert response.status_code == 400
    assert 'id="git_url-errors"' in html(response)
    assert not Repository.objects.exists() and not AuditEvent.objects.exists()


def test_repository_name_must_be_unique(admin, repository):
    response = login(admin).post(reverse("manage_repository_new"), repo_data(name=repository.name))
    assert response.status_code == 400 and 'id="name-errors"' in html(response)
    assert Repository.objects.count() == 1


def test_admin_creates_a_docker_environment_with_its_policy(admin, groups):
    data = env_data(
        deploy_groups=[groups[permissions.DEVELOPERS].pk], approve_groups=[groups[permissions.ADMINS].pk]
    )
    data.update(requires_approval="on", approvals_required="2")
    response = login(admin).post(reverse("manage_environment_new"), data)
    assert response.status_code == 302
    env = Environment.objects.get(name="stage")
    assert response.url == reverse("manage_environment_edit", args=["stage"])
    assert env.target_settings == {"port": 18080, "network_mode": "host"}
    assert env.needed_approvals == 2
    assert list(env.deploy_groups.values_list("name", flat=True)) == [permissions.DEVELOPERS]
    event = AuditEvent.objects.get(action="environment.create")
    assert "deploy_groups" in event.details["fields"] and "target_settings.port" in event.details["fields"]


def test_a_kubernetes_placement_needs_namespace_deployment_and_container_from_it_or_its_environment(admin):
    """The environment holds what its applications share (the namespace, say); what
    each one needs is checked where it comes together: on the placement."""
    from deployments.models import Placement, Repository

    response = login(admin).post(
        reverse("manage_environment_new"), env_data(target_kind="kubernetes", port=None, namespace="shop")
    )
    assert response.status_code == 302
    env = Environment.objects.get()
    repo = Repository.objects.create(name="api", git_url="/srv/api", image_name="x/api")
    response = login(admin).post(
        reverse("manage_placement_new"),
        {
            "repository": repo.pk,
            "environment": env.pk,
            "deployment": "api",
            "enabled": "on",
        },
    )
    assert response.status_code == 400
    assert "container required, here or in" in html(response) and 'id="container-errors"' in html(response)
    assert not Placement.objects.exists()


def test_environment_edit_records_which_fields_changed(admin, dev_env):
    port = dev_env.target_settings["port"]
    data = env_data(name="dev", order="15", port=str(port), health_path="/healthz", health_timeout="15")
    response = login(admin).post(reverse("manage_environment_edit", args=["dev"]), data)
    assert response.status_code == 302
    dev_env.refresh_from_db()
    assert dev_env.order == 15
    event = AuditEvent.objects.get(action="environment.update")
    assert "order" in event.details["changed"] and "deploy_groups" in event.details["changed"]
    assert "target_settings.port" not in event.details["changed"]


def test_kubeconfig_is_write_only(admin, make_environment):
    env = make_environment(
        "k8s",
        target_kind="kubernetes",
        target_settings={"namespace": "n", "deployment": "d", "container": "c"},
    )
    client = login(admin)
    url = reverse("manage_environment_edit", args=["k8s"])
    data = env_data(
        name="k8s", target_kind="kubernetes", port=None, namespace="n", deployment="d", container="c"
    )

    assert client.post(url, {**data, "kubeconfig": KUBECONFIG}).status_code == 302
    env.refresh_from_db()
    assert env.kubeconfig == KUBECONFIG.strip() and "kube-TOKEN" not in env.kubeconfig_encrypted
    event = AuditEvent.objects.get(action="environment.update")
    assert "kubeconfig replaced" in event.details["changed"] and "kube-TOKEN" not in json.dumps(event.details)
    page = html(client.get(url))
    assert "kube-TOKEN" not in page and "kubeconfig stored" in page

    # A blank field keeps it; a page that comes back with an error does not echo it.
    assert client.post(url, data).status_code == 302
    env.refresh_from_db()
    assert env.kubeconfig == KUBECONFIG.strip()
    failed = client.post(url, {**data, "kubeconfig": KUBECONFIG, "timeout": "soon"})
    assert failed.status_code == 400 and "kube-TOKEN" not in html(failed)

    assert client.post(url, {**data, "clear_kubeconfig": "on"}).status_code == 302
    env.refresh_from_db()
    assert env.kubeconfig_encrypted == ""
    assert (
        "kubeconfig cleared"
        in AuditEvent.objects.filter(action="environment.update").first().details["changed"]
    )


def test_text_that_is_not_a_kubeconfig_is_refused_without_echoing_it(admin, dev_env):
    data = env_data(name="dev", kubeconfig="just some words with kube-TOKEN-77aa")
    response = login(admin).post(reverse("manage_environment_edit", args=["dev"]), data)
    assert response.status_code == 400 and 'id="kubeconfig-errors"' in html(response)
    assert "kube-TOKEN" not in html(response)


def test_secret_variable_is_stored_encrypted_and_never_shown(admin, dev_env):
    client = login(admin)
    data = {"name": "API_TOKEN", "value": SECRET, "is_secret": "on"}
    response = client.post(reverse("manage_variable_set", args=["dev"]), data)
    assert response.status_code == 302
    variable = Variable.objects.get(environment=dev_env, name="API_TOKEN")
    assert variable.is_secret and variable.plain_value == ""
    assert variable.encrypted_value and SECRET not in variable.encrypted_value and variable.value == SECRET
    edit = reverse("manage_environment_edit", args=["dev"])
    for page in (client.get(edit), client.get(edit + "?variable=API_TOKEN")):
        assert "API_TOKEN" in html(page) and SECRET not in html(page)
    event = AuditEvent.objects.get(action="variable.set")
    assert event.details["variable"] == "API_TOKEN" and event.details["is_secret"] is True
    assert SECRET not in json.dumps(event.details) and SECRET not in event.object_repr


def test_a_refused_secret_is_not_echoed_back(admin, dev_env):
    data = {"name": "1BAD", "value": SECRET, "is_secret": "on"}
    response = login(admin).post(reverse("manage_variable_set", args=["dev"]), data)
    assert response.status_code == 400 and 'id="name-errors"' in html(response)
    assert SECRET not in html(response)
    assert not Variable.objects.exists()


def test_editing_a_secret_with_a_blank_value_keeps_it(admin, dev_env):
    client = login(admin)
    url = reverse("manage_variable_set", args=["dev"])
    client.post(url, {"name": "API_TOKEN", "value": SECRET, "is_secret": "on"})
    assert client.post(url, {"name": "API_TOKEN", "value": "", "is_secret": "on"}).status_code == 302
    assert Variable.objects.get(name="API_TOKEN").value == SECRET
    assert AuditEvent.objects.filter(action="variable.set").first().details["value_changed"] is False
    # Turning it plain with no new value would put it on the page: refused.
    response = client.post(url, {"name": "API_TOKEN", "value": ""})
    assert response.status_code == 400 and 'id="value-errors"' in html(response)
    assert Variable.objects.get(name="API_TOKEN").is_secret


def test_plain_variable_is_shown_and_can_be_deleted(admin, dev_env):
    client = login(admin)
    client.post(reverse("manage_variable_set", args=["dev"]), {"name": "LOG_LEVEL", "value": "debug"})
    variable = Variable.objects.get(name="LOG_LEVEL")
    assert variable.plain_value == "debug" and variable.encrypted_value == ""
    assert "debug" in html(client.get(reverse("manage_environment_edit", args=["dev"])))
    response = client.post(reverse("manage_variable_delete", args=["dev", variable.pk]))
    assert response.status_code == 302 and not Variable.objects.exists()
    assert AuditEvent.objects.get(action="variable.delete").details == {
        "variable": "LOG_LEVEL",
        "is_secret": False,
    }


def test_one_off_freeze_must_end_after_it_starts(admin, dev_env):
    start = timezone.localtime() + timedelta(days=1)
    data = {
        "kind": "once",
        "reason": "Release party",
        "starts_at": start.strftime("%Y-%m-%d %H:%M"),
        "ends_at": (start - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"),
    }
    response = login(admin).post(reverse("manage_freeze_add", args=["dev"]), data)
    assert response.status_code == 400 and 'id="ends_at-errors"' in html(response)
    assert not FreezeWindow.objects.exists()


def test_weekly_freeze_needs_a_duration_and_a_reason(admin, dev_env):
    data = {"kind": "weekly", "reason": "  ", "weekday": "4", "start_time": "16:00", "duration_minutes": "0"}
    response = login(admin).post(reverse("manage_freeze_add", args=["dev"]), data)
    page = html(response)
    assert (
        response.status_code == 400
        and 'id="duration_minutes-errors"' in page
        and 'id="reason-errors"' in page
    )
    assert not FreezeWindow.objects.exists()


def test_admin_adds_and_removes_a_freeze_window(admin, dev_env):
    client = login(admin)
    now = timezone.localtime()
    data = {
        "kind": "once",
        "reason": "Audit week",
        # The format a browser's datetime-local input sends.
        "starts_at": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    assert client.post(reverse("manage_freeze_add", args=["dev"]), data).status_code == 302
    window = FreezeWindow.objects.get()
    assert dev_env.active_freeze() == window
    assert AuditEvent.objects.get(action="freeze.create").details["reason"] == "Audit week"
    assert client.post(reverse("manage_freeze_delete", args=["dev", window.pk])).status_code == 302
    assert dev_env.active_freeze() is None and AuditEvent.objects.filter(action="freeze.delete").exists()


def test_admin_changes_a_users_roles(admin, dev):
    client = login(admin)
    assert f'action="{reverse("manage_user_roles", args=[dev.pk])}"' in html(
        client.get(reverse("manage_users"))
    )
    response = client.post(
        reverse("manage_user_roles", args=[dev.pk]), {"groups": [permissions.RELEASE_MANAGERS]}
    )
    assert response.status_code == 302
    assert set(dev.groups.values_list("name", flat=True)) == {permissions.RELEASE_MANAGERS}
    event = AuditEvent.objects.get(action="user.roles")
    assert event.object_repr == "dev" and event.actor == admin
    assert event.details["added"] == [permissions.RELEASE_MANAGERS]
    assert event.details["removed"] == [permissions.DEVELOPERS]


def test_admin_cannot_drop_their_own_admins_role(admin):
    client = login(admin)
    response = client.post(
        reverse("manage_user_roles", args=[admin.pk]), {"groups": [permissions.DEVELOPERS]}
    )
    assert response.status_code == 302
    assert list(admin.groups.values_list("name", flat=True)) == [permissions.ADMINS]
    assert not AuditEvent.objects.filter(action="user.roles").exists()
    page = html(client.get(response.url))
    assert "cannot remove your own Admins role" in page


def test_unknown_role_is_refused(admin, dev):
    login(admin).post(reverse("manage_user_roles", args=[dev.pk]), {"groups": ["superusers"]})
    assert set(dev.groups.values_list("name", flat=True)) == {permissions.DEVELOPERS}


def test_test_connection_reaches_the_docker_engine(admin, make_environment):
    env = make_environment("stage", target_settings={"docker_host": ""}, port=free_port())
    response = login(admin).post(reverse("manage_environment_test_connection", args=["stage"]), follow=True)
    page = html(response)
    assert response.status_code == 200 and "Connection OK: Docker" in page
    assert "no container shipmate-stage yet" in page
    event = AuditEvent.objects.get(action="environment.test_connection")
    assert event.details == {"ok": True} and event.object_id == str(env.pk)


def test_test_connection_reports_an_unreachable_engine(admin, make_environment):
    make_environment("stage", target_settings={"docker_host": "unix:///nonexistent.sock"})
    response = login(admin).post(reverse("manage_environment_test_connection", args=["stage"]), follow=True)
    assert response.status_code == 200
    assert "Connection failed" in html(response) and "unreachable" in html(response)
    assert AuditEvent.objects.get(action="environment.test_connection").details == {"ok": False}


def test_test_connection_reports_a_broken_kubernetes_setup(admin, make_environment):
    make_environment("k8s", target_kind="kubernetes", target_settings={"namespace": "n", "deployment": "d"})
    response = login(admin).post(reverse("manage_environment_test_connection", args=["k8s"]), follow=True)
    assert (
        response.status_code == 200
        and "Connection failed" in html(response)
        and "container" in html(response)
    )


def test_manage_posts_need_a_csrf_token(admin, dev_env):
    client = login(admin, enforce_csrf_checks=True)
    response = client.post(reverse("manage_variable_set", args=["dev"]), {"name": "X", "value": "1"})
    assert response.status_code == 403 and not Variable.objects.exists()
    response = client.post(reverse("manage_repository_new"), repo_data())
    assert response.status_code == 403 and not Repository.objects.exists()


def test_test_connection_and_deletes_refuse_get(admin, manage_objects):
    client = login(admin)
    for name in ("manage_environment_test_connection", "manage_variable_delete", "manage_freeze_delete"):
        assert client.get(reverse(name, args=url_args(name, manage_objects))).status_code == 405
    assert Variable.objects.exists() and FreezeWindow.objects.exists()


def test_the_environment_form_has_one_input_per_setting_of_each_target_kind(admin, dev_env):
    from deployments.pipeline.targets.settings import DockerSettings, KubernetesSettings

    page = html(login(admin).get(reverse("manage_environment_edit", args=["dev"])))
    for settings in (DockerSettings, KubernetesSettings):
        for info in settings.describe():
            assert f'name="{info.name}"' in page
    assert 'name="target_settings"' not in page


def test_the_environment_form_keeps_only_the_chosen_kinds_settings_typed(admin):
    data = env_data(target_kind="kubernetes", port="8080", namespace="shop", timeout="90", in_cluster="true")
    assert login(admin).post(reverse("manage_environment_new"), data).status_code == 302
    assert Environment.objects.get().target_settings == {
        "namespace": "shop",
        "timeout": 90.0,
        "in_cluster": True,
    }


def test_an_approval_count_out_of_range_is_refused_by_the_model(admin, dev_env):
    data = env_data(name="dev", approvals_required="21")
    response = login(admin).post(reverse("manage_environment_edit", args=["dev"]), data)
    assert response.status_code == 400 and 'id="approvals_required-errors"' in html(response)


def test_freeze_window_times_name_their_time_zone(admin, dev_env, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    client = login(admin)
    weekly = {
        "kind": "weekly",
        "reason": "Release train",
        "weekday": 4,
        "start_time": "16:00",
        "duration_minutes": 120,
    }
    assert client.post(reverse("manage_freeze_add", args=["dev"]), weekly).status_code == 302
    start = timezone.make_aware(datetime(2026, 12, 24, 9, 0), timezone.get_current_timezone())
    FreezeWindow.objects.create(
        environment=dev_env, reason="Holidays", starts_at=start, ends_at=start + timedelta(days=2)
    )
    page = html(client.get(reverse("manage_environment_edit", args=["dev"])))
    assert "Every Friday at 16:00 for 120 min (Europe/Berlin)" in page
    assert "2026-12-24 09:00 → 2026-12-26 09:00 (Europe/Berlin)" in page
    # The form says in which zone the times it asks for are read.
    assert "Starts (one-off) (Europe/Berlin)" in page and "At (weekly) (Europe/Berlin)" in page
