"""The Django admin configures; it cannot bypass the services, the approvals or the
audit trail, and it never shows a secret variable's value."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from deployments.models import Approval, AuditEvent, Deployment, Environment, Status, Variable

pytestmark = pytest.mark.django_db

SECRET = "sk-admin-typed-this-9f3e"


@pytest.fixture
def superuser(db: Any) -> User:
    return User.objects.create_superuser("root", "root@example.test", "root-pw")


@pytest.fixture
def root(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def awaiting(dev: User, release: User, repository: Any, live_env: Environment) -> Deployment:
    deployment = Deployment.objects.create(
        repository=repository,
        environment=live_env,
        ref="main",
        requested_by=dev,
        status=Status.AWAITING_APPROVAL,
        commit_sha="e" * 40,
        image_digest="r/x@sha256:" + "e" * 64,
        config_hash=live_env.placements.get(repository=repository).config_hash(),
    )
    return deployment


def environment_form(env: Environment, variables: list[dict[str, Any]]) -> dict[str, Any]:
    """POST data for the environment change page, with `variables` as the inline rows."""
    data: dict[str, Any] = {
        "name": env.name,
        "order": env.order,
        "target_kind": env.target_kind,
        "target_settings": '{"port": 8080}',
        "smoke_url": "",
        "deploy_groups": [g.pk for g in env.deploy_groups.all()],
        "approve_groups": [g.pk for g in env.approve_groups.all()],
        "approvals_required": env.approvals_required,
        "approval_ttl_minutes": env.approval_ttl_minutes,
        "variables-TOTAL_FORMS": len(variables),
        "variables-INITIAL_FORMS": sum(1 for row in variables if row.get("id")),
        "variables-MIN_NUM_FORMS": 0,
        "variables-MAX_NUM_FORMS": 1000,
        "freeze_windows-TOTAL_FORMS": 0,
        "freeze_windows-INITIAL_FORMS": 0,
        "freeze_windows-MIN_NUM_FORMS": 0,
        "freeze_windows-MAX_NUM_FORMS": 1000,
    }
    for index, row in enumerate(variables):
        data[f"variables-{index}-environment"] = env.pk
        for key, value in row.items():
            if key == "is_secret" and not value:
                continue  # an unticked checkbox is absent from the POST
            data[f"variables-{index}-{key}"] = "on" if value is True else value
    return data


def change_url(env: Environment) -> str:
    return reverse("admin:deployments_environment_change", args=[env.pk])


def save(client: Client, env: Environment, variables: list[dict[str, Any]]) -> None:
    response = client.post(change_url(env), environment_form(env, variables))
    # The admin answers an invalid form with 200 and the errors; a save redirects.
    assert response.status_code == 302, response.context and response.context["errors"]


def test_approval_cannot_be_added_in_the_admin(root: Client) -> None:
    assert root.get(reverse("admin:deployments_approval_add")).status_code == 403


def test_audit_event_cannot_be_added_in_the_admin(root: Client) -> None:
    assert root.get(reverse("admin:deployments_auditevent_add")).status_code == 403


def test_approval_is_shown_but_cannot_be_changed_or_deleted(
    root: Client, awaiting: Deployment, release: User
) -> None:
    approval = Approval.objects.create(
        deployment=awaiting,
        approver=release,
        decision="approved",
        commit_sha=awaiting.commit_sha,
        image_digest=awaiting.image_digest,
        config_hash=awaiting.config_hash,
        expires_at=awaiting.created_at,
    )
    change = reverse("admin:deployments_approval_change", args=[approval.pk])
    assert root.get(change).status_code == 200
    assert root.post(change, {"decision": "rejected", "comment": "edited"}).status_code == 403
    assert root.post(reverse("admin:deployments_approval_delete", args=[approval.pk])).status_code == 403
    approval.refresh_from_db()
    assert (approval.decision, approval.comment) == ("approved", "")


def test_deployment_cannot_be_added_changed_or_deleted_in_the_admin(
    root: Client, awaiting: Deployment
) -> None:
    change = reverse("admin:deployments_deployment_change", args=[awaiting.pk])
    assert root.get(change).status_code == 200
    assert root.get(reverse("admin:deployments_deployment_add")).status_code == 403
    forged = {"status": Status.APPROVED, "commit_sha": "f" * 40, "image_digest": "evil@sha256:" + "f" * 64}
    assert root.post(change, forged).status_code == 403
    assert root.post(reverse("admin:deployments_deployment_delete", args=[awaiting.pk])).status_code == 403
    awaiting.refresh_from_db()
    assert awaiting.status == Status.AWAITING_APPROVAL
    assert awaiting.commit_sha == "e" * 40


def test_audit_event_cannot_be_deleted_in_the_admin(root: Client, dev: User) -> None:
    event = AuditEvent.objects.create(actor=dev, actor_name="dev", action="test.event", object_type="x")
    assert root.post(reverse("admin:deployments_auditevent_delete", args=[event.pk])).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_secret_variable_saved_through_the_admin_is_stored_encrypted_and_never_shown(
    root: Client, dev_env: Environment
) -> None:
    save(root, dev_env, [{"name": "API_KEY", "is_secret": True, "value": SECRET}])

    variable = Variable.objects.get(environment=dev_env, name="API_KEY")
    assert variable.encrypted_value and SECRET not in variable.encrypted_value
    assert variable.plain_value == ""
    assert variable.value == SECRET
    html = root.get(change_url(dev_env)).content.decode()
    assert "API_KEY" in html
    assert SECRET not in html
    assert 'name="variables-0-plain_value"' not in html


def test_blank_value_keeps_the_stored_secret(root: Client, dev_env: Environment) -> None:
    variable = dev_env.variables.create(name="API_KEY", is_secret=True)
    variable.set_value(SECRET)
    variable.save()

    save(root, dev_env, [{"id": variable.pk, "name": "API_KEY", "is_secret": True, "value": ""}])

    variable.refresh_from_db()
    assert variable.value == SECRET and variable.plain_value == ""


def test_new_value_replaces_the_stored_one(root: Client, dev_env: Environment) -> None:
    variable = dev_env.variables.create(name="MODE", plain_value="slow")

    save(root, dev_env, [{"id": variable.pk, "name": "MODE", "is_secret": False, "value": "fast"}])

    variable.refresh_from_db()
    assert (variable.plain_value, variable.encrypted_value) == ("fast", "")


def test_marking_a_plain_variable_secret_encrypts_its_stored_value(
    root: Client, dev_env: Environment
) -> None:
    variable = dev_env.variables.create(name="TOKEN", plain_value=SECRET)

    save(root, dev_env, [{"id": variable.pk, "name": "TOKEN", "is_secret": True, "value": ""}])

    variable.refresh_from_db()
    assert variable.plain_value == ""
    assert variable.value == SECRET
    assert SECRET not in root.get(change_url(dev_env)).content.decode()


def test_the_admin_refuses_bad_environment_settings_with_the_manage_forms_message(
    root: Client, admin: User, dev_env: Environment
) -> None:
    from django.utils.html import escape

    message = escape("health_path must be a path starting with '/', not 'healthz'")
    data = environment_form(dev_env, [])
    data["target_settings"] = '{"port": 8080, "health_path": "healthz"}'
    response = root.post(change_url(dev_env), data)
    assert response.status_code == 200 and message in response.content.decode()

    manage = Client()
    manage.force_login(admin)
    form = {"name": "dev", "order": "10", "target_kind": "docker", "port": "8080", "health_path": "healthz"}
    form.update(approvals_required="1", approval_ttl_minutes="240")
    response = manage.post(reverse("manage_environment_edit", args=["dev"]), form)
    assert response.status_code == 400
    assert f'id="health_path-errors">{message}</div>' in response.content.decode()
    dev_env.refresh_from_db()
    assert dev_env.target_settings["health_path"] == "/healthz"


def test_the_admin_refuses_a_variable_name_the_manage_form_refuses(
    root: Client, dev_env: Environment
) -> None:
    response = root.post(change_url(dev_env), environment_form(dev_env, [{"name": "1BAD", "value": "x"}]))
    assert response.status_code == 200
    assert "Use letters, digits and underscores, not starting with a digit." in response.content.decode()
    assert not Variable.objects.filter(name="1BAD").exists()


def test_every_admin_change_is_in_the_audit_trail_without_secret_values(
    root: Client, superuser: User, dev: User, dev_env: Environment
) -> None:
    save(root, dev_env, [{"name": "API_KEY", "is_secret": True, "value": SECRET}])
    # A user's groups (their role) changed in the admin, as well as an environment.
    response = root.post(
        reverse("admin:auth_user_change", args=[dev.pk]),
        {
            "username": "dev",
            "is_active": "on",
            "groups": [],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not dev.groups.exists()

    events = AuditEvent.objects.filter(details__via="admin")
    user_event = events.get(object_type="user")
    assert user_event.action == "admin.change" and user_event.actor == superuser
    assert user_event.object_id == str(dev.pk) and "Groups" in user_event.details["change"]
    env_event = events.get(object_type="environment")
    assert env_event.object_id == str(dev_env.pk) and "API_KEY" in env_event.details["change"]
    assert all(SECRET not in str(e.details) for e in AuditEvent.objects.all())
