"""The OpenAPI 3 schema validates, names every endpoint and the bearer scheme, and the
docs page works offline (Swagger UI from drf-spectacular-sidecar, no CDN)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    response = Client().get(reverse("api_schema"))
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_the_schema_is_valid_openapi_3():
    schema = _schema()
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on an invalid document


def test_the_schema_names_every_endpoint_and_the_bearer_scheme():
    schema = _schema()
    assert {
        "/api/v1/applications/",
        "/api/v1/environments/",
        "/api/v1/environments/{name}/lock",
        "/api/v1/environments/{name}/rollback",
        "/api/v1/environments/{name}/promote",
        "/api/v1/placements/",
        "/api/v1/deployments/",
        "/api/v1/deployments/{id}/",
        "/api/v1/deployments/{id}/approve",
        "/api/v1/deployments/{id}/log",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["accessToken"]["scheme"] == "bearer"
    assert "post" in schema["paths"]["/api/v1/deployments/"]


def test_the_docs_page_loads_its_assets_from_this_server():
    client = Client()
    response = client.get(reverse("api_docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets, html
    for url in assets:
        assert url.startswith("/static/"), url
        # What the ASGI static handler (and collectstatic) would serve.
        assert finders.find(url.removeprefix("/static/")) is not None, url
    assert "cdn" not in html.lower()
