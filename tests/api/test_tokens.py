"""Personal access tokens: stored as a hash, shown once, scoped, expiring and revocable;
token requests need no CSRF token, session requests still do."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.api.models import AccessToken
from deployments.models import AuditEvent
from deployments.services import DeployRefused

from .conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_as_the_sha256_of_its_secret_only(dev, make_token):
    secret = make_token(dev)
    token = AccessToken.objects.get()
    assert secret.startswith("shp_") and len(secret) > 40
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.prefix == secret[:12]
    stored = json.dumps(list(AccessToken.objects.values()), default=str)
    assert secret not in stored


def test_a_token_authenticates_as_its_user_and_records_its_use(dev, dev_env, make_token):
    response = ApiClient(make_token(dev)).get(reverse("api_environments"))
    assert response.status_code == 200
    assert [e["name"] for e in response.json()] == ["dev"]
    assert AccessToken.objects.get().last_used_at is not None


def test_no_credentials_answer_401_unauthenticated(db):
    response = ApiClient().get(reverse("api_environments"))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer shp_not-a-token", "Bearer nope", "Bearer"])
def test_an_unknown_or_malformed_token_is_refused(db, header):
    response = Client().get(reverse("api_environments"), HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_an_expired_token_is_refused(dev, dev_env, make_token):
    secret = make_token(dev, expires_at=timezone.now() + timedelta(seconds=30))
    AccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = ApiClient(secret).get(reverse("api_environments"))
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": "This token has expired."}


def test_a_revoked_token_is_refused(dev, dev_env, make_token):
    secret = make_token(dev)
    AccessToken.objects.update(revoked_at=timezone.now())
    response = ApiClient(secret).get(reverse("api_environments"))
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": "This token was revoked."}


def test_a_token_of_an_inactive_user_is_refused(dev, dev_env, make_token):
    secret = make_token(dev)
    dev.is_active = False
    dev.save()
    assert ApiClient(secret).get(reverse("api_environments")).status_code == 401


def test_a_token_without_a_scope_cannot_use_it(release, dev_env, make_token):
    reader = ApiClient(make_token(release, ("read",)))
    assert reader.get(reverse("api_environments")).status_code == 200
    response = reader.post(reverse("api_environment_lock", args=["dev"]), {"reason": "migration"})
    assert response.status_code == 403
    assert response.json() == {"code": "forbidden", "message": "This token lacks the 'admin' scope."}
    dev_env.refresh_from_db()
    assert not dev_env.is_locked
    deployer = ApiClient(make_token(release, ("deploy",)))
    assert deployer.get(reverse("api_environments")).json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("scope", "url_name", "allowed"),
    [
        ("read", "api_deployments", False),
        ("approve", "api_deployments", False),
        ("deploy", "api_deployments", True),
        ("deploy", "api_environment_lock", False),
        ("admin", "api_environment_lock", True),
        ("deploy", "api_rollback", True),
        ("approve", "api_rollback", False),
        ("deploy", "api_promote", True),
    ],
)
def test_each_write_needs_its_scope(admin, dev_env, make_token, scope, url_name, allowed):
    args = [] if url_name == "api_deployments" else ["dev"]
    response = ApiClient(make_token(admin, (scope,))).post(reverse(url_name, args=args), {})
    # With the scope the request reaches validation (400) or the service; without it, 403.
    assert (response.json()["code"] != "forbidden") == allowed, response.json()


@pytest.mark.parametrize(("scope", "allowed"), [("approve", True), ("deploy", False), ("read", False)])
def test_approve_and_reject_need_the_approve_scope(release, dev_env, make_token, scope, allowed):
    client = ApiClient(make_token(release, (scope,)))
    for name in ("api_deployment_approve", "api_deployment_reject"):
        response = client.post(reverse(name, args=[999999]))
        assert (response.status_code == 404) == allowed and (response.status_code == 403) != allowed


def test_token_requests_need_no_csrf_token(release, dev_env, make_token):
    client = ApiClient(make_token(release))  # enforce_csrf_checks is on
    response = client.post(reverse("api_environment_lock", args=["dev"]), {"reason": "migration"})
    assert response.status_code == 200, response.json()
    assert response.json()["is_locked"] is True


def test_session_requests_still_need_the_csrf_token(release, dev_env):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(release)
    api = ApiClient(client=browser)
    assert api.get(reverse("api_environments")).status_code == 200
    response = api.post(reverse("api_environment_lock", args=["dev"]), {"reason": "migration"})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden" and "CSRF" in response.json()["message"]
    dev_env.refresh_from_db()
    assert not dev_env.is_locked
    browser.get(reverse("tokens"))  # sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    response = browser.post(
        reverse("api_environment_lock", args=["dev"]),
        json.dumps({"reason": "migration"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf,
    )
    assert response.status_code == 200


def test_the_tokens_page_creates_a_token_shown_once_and_audits_it(dev):
    browser = Client()
    browser.force_login(dev)
    response = browser.post(reverse("tokens"), {"name": "ci", "scopes": ["read", "deploy"], "expires_at": ""})
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret.startswith("shp_") and secret in response.content.decode()
    token = AccessToken.objects.get()
    assert token.name == "ci" and token.scopes == ["read", "deploy"] and token.user == dev
    assert AuditEvent.objects.filter(action="token.create", actor=dev, object_id=str(token.pk)).exists()
    again = browser.get(reverse("tokens")).content.decode()
    assert secret not in again and token.prefix in again


def test_the_tokens_page_needs_a_scope_and_a_future_expiry(dev):
    browser = Client()
    browser.force_login(dev)
    assert browser.post(reverse("tokens"), {"name": "ci"}).status_code == 400
    past = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = browser.post(reverse("tokens"), {"name": "ci", "scopes": ["read"], "expires_at": past})
    assert response.status_code == 400
    assert not AccessToken.objects.exists()


def test_the_tokens_page_needs_csrf_for_every_change(dev, make_token):
    make_token(dev)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(dev)
    assert browser.post(reverse("tokens"), {"name": "x", "scopes": ["read"]}).status_code == 403
    token = AccessToken.objects.get()
    assert browser.post(reverse("token_revoke", args=[token.pk])).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None and AccessToken.objects.count() == 1


def test_revoking_on_the_page_stops_the_token_and_is_audited(dev, dev_env, make_token):
    secret = make_token(dev)
    token = AccessToken.objects.get()
    browser = Client()
    browser.force_login(dev)
    response = browser.post(reverse("token_revoke", args=[token.pk]))
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="token.revoke", actor=dev, object_id=str(token.pk)).exists()
    assert ApiClient(secret).get(reverse("api_environments")).status_code == 401
    assert "revoked" in browser.get(reverse("tokens")).content.decode()


def test_nobody_revokes_someone_elses_token(dev, dev2, make_token):
    make_token(dev)
    token = AccessToken.objects.get()
    browser = Client()
    browser.force_login(dev2)
    assert browser.post(reverse("token_revoke", args=[token.pk])).status_code == 404
    from deployments.api.services import access_token_revoke

    with pytest.raises(DeployRefused):
        access_token_revoke(user=dev2, token=token)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_tokens_page_needs_a_login(db):
    response = Client().get(reverse("tokens"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
