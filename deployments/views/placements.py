from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from .. import permissions, selectors, services
from ..models import Placement
from .common import client_ip, get_environment, partial


@login_required
def placement_detail(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    env = get_environment(request, environment)
    placement = get_object_or_404(
        Placement.objects.select_related("repository", "environment"),
        environment=env,
        repository__name=repository,
    )
    context = {
        "placement": placement,
        "env": env,
        **selectors.placement_overview(request.user, placement),
        "can_deploy": permissions.can_deploy(request.user, env),
        "can_lock": permissions.can_lock(request.user, env),
        "can_manage": permissions.can_manage(request.user),
        "badge_url": request.build_absolute_uri(reverse("placement_badge", args=[repository, environment])),
    }
    return render(request, partial(request, "deployments/placement.html", "queue"), context)


def _placement(request: HttpRequest, repository: str, environment: str) -> Placement:
    env = get_environment(request, environment)
    return get_object_or_404(
        Placement.objects.select_related("repository", "environment"),
        environment=env,
        repository__name=repository,
    )


def _act(request: HttpRequest, placement: Placement, action: Any, done: str, **kwargs: Any) -> HttpResponse:
    try:
        action(user=request.user, placement=placement, source_ip=client_ip(request), **kwargs)
    except services.DeployRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done)
    return redirect(
        "placement_detail", repository=placement.repository.name, environment=placement.environment.name
    )


@login_required
@require_POST
def placement_lock(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = _placement(request, repository, environment)
    return _act(request, placement, services.placement_lock, "Locked.", reason=request.POST.get("reason", ""))


@login_required
@require_POST
def placement_unlock(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    return _act(request, _placement(request, repository, environment), services.placement_unlock, "Unlocked.")
