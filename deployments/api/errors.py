"""Every error is `{"code": ..., "message": ...}` with a stable code."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

from deployments.services import DeployRefused, NeedsConfirmation


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return " ".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.Throttled, "throttled"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.ValidationError, "invalid"),
    (exceptions.ParseError, "invalid"),
    (exceptions.UnsupportedMediaType, "invalid"),
    (exceptions.NotAcceptable, "not_acceptable"),
]


def error(code: str, message: str, http_status: int) -> Response:
    return Response({"code": code, "message": message}, status=http_status)


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _body(exc: Exception) -> dict[str, str]:
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), "error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    return {"code": code, "message": _flatten(detail)}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, NeedsConfirmation):
        return error("needs_confirmation", str(exc), status.HTTP_409_CONFLICT)
    if isinstance(exc, DeployRefused):
        return error("refused", str(exc), status.HTTP_409_CONFLICT)
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    response.data = _body(exc)
    return response


def error_json(exc: APIException | Http404 | PermissionDenied) -> JsonResponse:
    """The same error body for a plain Django view (the API's async event stream)."""
    api_exc = _as_api_exception(exc)
    assert isinstance(api_exc, exceptions.APIException)
    response = JsonResponse(_body(api_exc), status=api_exc.status_code)
    if isinstance(api_exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response["WWW-Authenticate"] = "Bearer"
    if isinstance(api_exc, exceptions.Throttled) and api_exc.wait is not None:
        response["Retry-After"] = str(math.ceil(api_exc.wait))
    return response
