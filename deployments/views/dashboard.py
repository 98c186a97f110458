from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import selectors
from ..models import Repository, Status
from .common import partial


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    columns, rows = selectors.placement_matrix(request.user)
    context = {"columns": columns, "rows": rows}
    return render(request, partial(request, "deployments/dashboard.html", "environments"), context)


@login_required
def history(request: HttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "") for key in ("repository", "environment", "status")}
    deployments = selectors.deployment_history(request.user, **filters)[:200]
    context = {
        "deployments": deployments,
        "filters": filters,
        "repositories": Repository.objects.values_list("name", flat=True),
        "environments": [e.name for e in selectors.visible_environments(request.user)],
        "statuses": Status.choices,
    }
    return render(request, partial(request, "deployments/history.html", "table"), context)
