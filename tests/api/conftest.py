"""Tokens and a JSON client for the API tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from deployments.api.models import SCOPES
from deployments.api.services import access_token_create


class ApiClient:
    """JSON in and out, with `Authorization: Bearer <token>` when one is given. CSRF
    checks are on, as for a real client."""

    def __init__(self, token: str | None = None, client: Client | None = None) -> None:
        self.client = client or Client(enforce_csrf_checks=True)
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def get(self, url: str, params: dict[str, Any] | None = None) -> Any:
        return self.client.get(url, params or {}, **self.headers)

    def post(self, url: str, data: dict[str, Any] | None = None) -> Any:
        return self.client.post(url, json.dumps(data or {}), content_type="application/json", **self.headers)


@pytest.fixture(autouse=True)
def _fresh_throttle() -> Iterator[None]:
    cache.clear()  # the throttle counts in the default cache
    yield
    cache.clear()


@pytest.fixture
def make_token(db: Any) -> Callable[..., str]:
    def make(user: Any, scopes: tuple[str, ...] = SCOPES, expires_at: datetime | None = None) -> str:
        return access_token_create(user=user, name="test", scopes=scopes, expires_at=expires_at)[1]

    return make


@pytest.fixture
def api_as(make_token: Callable[..., str]) -> Callable[..., ApiClient]:
    def as_user(user: Any, scopes: tuple[str, ...] = SCOPES) -> ApiClient:
        return ApiClient(make_token(user, scopes))

    return as_user
