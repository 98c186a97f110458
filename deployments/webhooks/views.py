"""The endpoints git hosts call, and the placement page's webhook actions."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .. import permissions
from ..models import Placement
from ..services import DeployRefused
from ..views.common import client_ip
from ..views.placements import _placement
from . import providers, services
from .forms import RulesForm
from .models import Provider, WebhookConfig

logger = logging.getLogger(__name__)


def _refuse(status: int, reason: str) -> JsonResponse:
    return JsonResponse({"outcome": "refused", "reason": reason}, status=status)


def _body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is larger than the limit (read no further than that)."""
    limit = settings.WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def receive(request: HttpRequest, provider: str, placement_id: str) -> HttpResponse:
    placement = get_object_or_404(
        Placement.objects.select_related("repository", "environment"), pk=placement_id
    )
    body = _body(request)
    if body is None:
        return _refuse(413, f"The body is larger than {settings.WEBHOOK_MAX_BYTES} bytes.")
    config = WebhookConfig.objects.filter(placement=placement).first()
    secret = config.secret if config and config.has_secret else ""
    if not providers.verify(provider, secret, body, request.headers):
        logger.warning("webhook for %s refused: bad signature from %s", placement, client_ip(request))
        return _refuse(403, "The signature does not match this placement's secret.")
    try:
        push = providers.parse(provider, body, request.headers)
    except providers.BadRequest as exc:
        return _refuse(400, str(exc))
    received = services.webhook_receive(
        placement=placement,
        provider=provider,
        delivery_id=providers.delivery_id(provider, request.headers),
        push=push,
        source_ip=client_ip(request),
    )
    d = received.delivery
    return JsonResponse(
        {"outcome": d.outcome, "reason": d.reason, "delivery": d.pk, "deployment": d.deployment_id},
        status=received.status,
    )


def _manageable(request: HttpRequest, repository: str, environment: str) -> Placement:
    if not permissions.can_manage(request.user):
        raise PermissionDenied
    return _placement(request, repository, environment)


def _back(placement: Placement) -> HttpResponse:
    return redirect(
        "placement_detail", repository=placement.repository.name, environment=placement.environment.name
    )


@login_required
@require_POST
def secret_regenerate(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = _manageable(request, repository, environment)
    secret = services.webhook_secret_regenerate(
        user=request.user, placement=placement, source_ip=client_ip(request)
    )
    # Rendered, not redirected: the secret is shown this once and stored nowhere in clear.
    context = {"placement": placement, "secret": secret, "providers": Provider.choices}
    return render(request, "webhooks/secret.html", context)


@login_required
@require_POST
def rules_set(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = _manageable(request, repository, environment)
    form = RulesForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return _back(placement)
    try:
        services.webhook_rules_set(
            user=request.user, placement=placement, source_ip=client_ip(request), **form.cleaned_data
        )
    except DeployRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Webhook rules saved.")
    return _back(placement)
