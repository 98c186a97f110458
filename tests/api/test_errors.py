"""Errors are `{"code", "message"}` with stable codes; requests are throttled per token."""

from __future__ import annotations

import pytest
from django.test import override_settings
from django.urls import reverse

from deployments.models import Status

from .conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_an_unknown_object_is_not_found(admin, api_as):
    response = api_as(admin).get(reverse("api_deployment", args=[424242]))
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not found."}


def test_a_bad_body_is_invalid_and_names_the_field(admin, dev_env, api_as):
    response = api_as(admin).post(reverse("api_deployments"), {"application": "demo"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and "environment" in body["message"] and "ref" in body["message"]


def test_a_bad_filter_is_invalid(admin, api_as):
    response = api_as(admin).get(reverse("api_deployments"), {"status": "bogus"})
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_a_refusal_carries_the_services_sentence(dev, release, repository, dev_env, api_as):
    response = api_as(dev).post(reverse("api_environment_lock", args=["dev"]), {"reason": "x"})
    assert response.status_code == 409
    assert response.json() == {"code": "refused", "message": "You may not lock dev."}


def test_a_lock_needs_a_reason(release, dev_env, api_as):
    response = api_as(release).post(reverse("api_environment_lock", args=["dev"]), {"reason": " "})
    assert response.status_code in (400, 409)
    assert response.json()["code"] in ("invalid", "refused")


def test_a_wrong_method_is_method_not_allowed(admin, api_as):
    response = api_as(admin).get(reverse("api_environment_lock", args=["dev"]))
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"


@override_settings(API_RATE="3/minute")
def test_each_token_is_throttled_on_its_own(dev, dev_env, make_token):
    first, second = ApiClient(make_token(dev)), ApiClient(make_token(dev))
    for _ in range(3):
        assert first.get(reverse("api_environments")).status_code == 200
    response = first.get(reverse("api_environments"))
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    assert second.get(reverse("api_environments")).status_code == 200


def test_the_deployment_list_filters_and_pages(dev, repository, dev_env, live_env, api_as):
    from deployments.models import Deployment

    made = [
        Deployment.objects.create(
            repository=repository, environment=env, ref="main", requested_by=dev, status=st
        )
        for env, st in [(dev_env, Status.SUCCEEDED), (live_env, Status.FAILED), (dev_env, Status.QUEUED)]
    ]
    api = api_as(dev)
    ids = lambda response: [r["id"] for r in response.json()["results"]]  # noqa: E731
    assert ids(api.get(reverse("api_deployments"), {"environment": "dev"})) == [made[2].pk, made[0].pk]
    assert ids(api.get(reverse("api_deployments"), {"status": "failed"})) == [made[1].pk]
    assert ids(api.get(reverse("api_deployments"), {"application": "nope"})) == []
    page = api.get(reverse("api_deployments"), {"limit": 2}).json()
    assert len(page["results"]) == 2 and page["next_before"] == page["results"][-1]["id"]
    rest = api.get(reverse("api_deployments"), {"limit": 2, "before": page["next_before"]}).json()
    assert [r["id"] for r in rest["results"]] == [made[0].pk] and rest["next_before"] is None


def test_the_log_pages_in_order(dev, repository, dev_env, api_as):
    from deployments.models import Deployment, LogLine

    d = Deployment.objects.create(repository=repository, environment=dev_env, ref="main", requested_by=dev)
    LogLine.objects.bulk_create(
        LogLine(deployment=d, entry_ms=1000 + i, entry_seq=0, stage="build", text=f"line {i}", number=i + 1)
        for i in range(5)
    )
    api = api_as(dev)
    first = api.get(reverse("api_deployment_log", args=[d.pk]), {"limit": 3}).json()
    assert [x["text"] for x in first["lines"]] == ["line 0", "line 1", "line 2"]
    assert first["finished"] is False
    rest = api.get(reverse("api_deployment_log", args=[d.pk]), {"after": first["next_after"]}).json()
    assert [x["number"] for x in rest["lines"]] == [4, 5] and rest["next_after"] is None


@pytest.mark.parametrize("value", ["600", "0/minute", "10/fortnight", "many/minute"])
def test_a_bad_api_rate_stops_start_up_naming_the_variable(tmp_path, value):
    from tests.test_compose import error_line, run_settings

    result = run_settings(tmp_path, {"SECRET_KEY": "x", "SHIPMATE_API_RATE": value}, "print('started')")
    assert result.returncode != 0 and "started" not in result.stdout
    assert "ImproperlyConfigured" in error_line(result) and "SHIPMATE_API_RATE" in error_line(result)
