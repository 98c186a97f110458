"""`GET /api/v1/deployments/<id>/events`: the page's live log stream for token clients.

DRF views are sync and would hold a thread for the whole stream, so this is a plain
async Django view: the token check is the DRF authentication's own (`bearer_token`),
the stream and the visibility check are `deployments.streams`'."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions

from deployments import streams

from .authentication import bearer_token
from .errors import error_json
from .throttling import TokenRateThrottle


async def _user(request: HttpRequest) -> Any:
    """The token's user (which must hold `read`) or, without a bearer header, the session's.
    Each connection counts once against SHIPMATE_API_RATE, like any other API request."""
    token = await sync_to_async(bearer_token)(request.headers.get("Authorization", ""))
    if token is None:
        user = await request.auser()
        if not user.is_authenticated:
            raise exceptions.NotAuthenticated()
    elif not token.has_scope("read"):
        raise exceptions.PermissionDenied("This token lacks the 'read' scope.")
    else:
        user = token.user
    # The throttle reads only these three of a DRF request.
    throttle = TokenRateThrottle()
    counted = SimpleNamespace(auth=token, user=user, META=request.META)
    if not await sync_to_async(throttle.allow_request)(counted, None):
        raise exceptions.Throttled(throttle.wait())
    return user


async def deployment_events(request: HttpRequest, pk: int) -> HttpResponse:
    if request.method != "GET":
        return error_json(exceptions.MethodNotAllowed(request.method or ""))
    try:
        deployment = await streams.viewable_deployment(await _user(request), pk)
    except (exceptions.APIException, Http404, PermissionDenied) as exc:
        return error_json(exc)
    return streams.event_stream(request, deployment)
