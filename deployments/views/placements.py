from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .. import permissions, selectors
from ..models import Placement
from .common import get_environment, partial


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
    }
    return render(request, partial(request, "deployments/placement.html", "queue"), context)
