"""`GET /api/v1/deployments/<id>/events`: the page's live log stream for token clients,
served by the real ASGI server, with the API's token checks and error bodies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from deployments.api.models import AccessToken
from deployments.logs import LogWriter
from deployments.models import LogLine
from tests.conftest import log_deployment
from tests.live import serve_asgi
from tests.views.test_stream import Events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server() -> Iterator[str]:
    with serve_asgi() as url:
        yield url


@pytest.fixture
def deployment(dev: Any) -> Iterator[Any]:
    for dep in log_deployment("api-events"):
        dep.environment.deploy_groups.set(dev.groups.all())
        dep.requested_by = dev
        dep.status = "running"
        dep.save()
        yield dep


def _url(server: str, deployment: Any) -> str:
    return server + reverse("api_deployment_events", args=[deployment.pk])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _stored_ids(deployment: Any) -> list[str]:
    return [
        line.event_id
        for line in LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq")
    ]


def test_a_token_follows_the_text_stream_and_resumes_after_the_last_event_id(
    server, deployment, dev, make_token
):
    token = make_token(dev, ("read",))
    with LogWriter(deployment.pk) as writer:
        for i in range(10):
            writer.line(f"\x1b[32mline {i}\x1b[0m", stage="build")
    with httpx.Client(timeout=10, headers=_bearer(token)) as http:
        with http.stream("GET", _url(server, deployment), params={"format": "text"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            first = Events(response).take(4)
        with LogWriter(deployment.pk) as writer:
            for i in range(10, 20):
                writer.line(f"\x1b[32mline {i}\x1b[0m", stage="build")
            writer.event("end", status="succeeded")
        headers = {"Last-Event-ID": first[-1]["id"]}
        with http.stream(
            "GET", _url(server, deployment), params={"format": "text"}, headers=headers
        ) as response:
            rest = Events(response).rest()

    lines = first + [e for e in rest if e["event"] == "line"]
    assert [e["data"] for e in lines] == [f"\x1b[32mline {i}\x1b[0m" for i in range(20)]
    assert [e["id"] for e in lines] == _stored_ids(deployment)
    assert rest[-1] == {"event": "end", "data": "succeeded"}


def test_a_browser_session_reads_the_stream_too(server, deployment, dev):
    with LogWriter(deployment.pk) as writer:
        writer.line("from the session")
        writer.event("end", status="succeeded")
    client = Client()
    client.force_login(dev)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    with httpx.Client(timeout=10, cookies=cookies) as http:
        with http.stream("GET", _url(server, deployment), params={"format": "text"}) as response:
            events = Events(response).rest()
    assert [e["data"] for e in events if e["event"] == "line"] == ["from the session"]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("unknown", "Unknown token."),
        ("revoked", "This token was revoked."),
        ("expired", "This token has expired."),
        ("inactive", "The token's user is inactive."),
        ("none", "Authentication credentials were not provided."),
    ],
)
def test_a_bad_or_missing_token_is_a_401_json_error(server, deployment, dev, make_token, state, message):
    token = make_token(dev, ("read",))
    stored = AccessToken.objects.get()
    if state == "unknown":
        token = "shp_" + "x" * 43
    elif state == "revoked":
        AccessToken.objects.filter(pk=stored.pk).update(revoked_at=timezone.now())
    elif state == "expired":
        AccessToken.objects.filter(pk=stored.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "inactive":
        dev.is_active = False
        dev.save()
    headers = {} if state == "none" else _bearer(token)
    response = httpx.get(_url(server, deployment), headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"code": "unauthenticated", "message": message}
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_without_read_or_a_hidden_deployment_is_forbidden(
    server, deployment, dev, outsider, make_token
):
    no_read = httpx.get(_url(server, deployment), headers=_bearer(make_token(dev, ("deploy",))), timeout=10)
    assert no_read.status_code == 403
    assert no_read.json() == {"code": "forbidden", "message": "This token lacks the 'read' scope."}
    hidden = httpx.get(_url(server, deployment), headers=_bearer(make_token(outsider, ("read",))), timeout=10)
    assert hidden.status_code == 403
    assert hidden.json()["code"] == "forbidden"
    missing = server + reverse("api_deployment_events", args=[deployment.pk + 1])
    gone = httpx.get(missing, headers=_bearer(make_token(dev, ("read",))), timeout=10)
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"


def test_the_schema_names_the_event_stream(client):
    import yaml

    schema = yaml.safe_load(client.get(reverse("api_schema")).content)
    operation = schema["paths"]["/api/v1/deployments/{id}/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


def test_each_connection_counts_against_the_tokens_rate(server, deployment, dev, make_token, settings):
    settings.API_RATE = "2/minute"
    first, second = make_token(dev, ("read",)), make_token(dev, ("read",))
    deployment.status = "succeeded"  # a finished run's stream ends by itself
    deployment.save()
    with httpx.Client(timeout=10) as http:
        for _ in range(2):
            assert http.get(_url(server, deployment), headers=_bearer(first)).status_code == 200
        refused = http.get(_url(server, deployment), headers=_bearer(first))
        assert refused.status_code == 429 and refused.json()["code"] == "throttled"
        assert int(refused.headers["Retry-After"]) > 0
        assert http.get(_url(server, deployment), headers=_bearer(second)).status_code == 200
