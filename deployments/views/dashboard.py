from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, StreamingHttpResponse
from django.shortcuts import render

from .. import feed, selectors
from ..models import Repository, Status
from .common import partial


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    columns, rows = selectors.placement_matrix(request.user)
    context = {"columns": columns, "rows": rows}
    return render(request, partial(request, "deployments/dashboard.html", "environments"), context)


async def dashboard_events(request: HttpRequest) -> HttpResponse:
    """SSE: tells the matrix page when a placement it shows changed (see feed.py)."""
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseForbidden("Log in first.")
    environments = await sync_to_async(selectors.visible_environments)(user)
    response = StreamingHttpResponse(
        feed.changes(e.pk for e in environments), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


HISTORY_PAGE = 50


@login_required
def history(request: HttpRequest) -> HttpResponse:
    filters = {key: request.GET.get(key, "") for key in ("repository", "environment", "status")}
    before = request.GET.get("before", "")
    rows = list(
        selectors.deployment_history(
            request.user, **filters, before=int(before) if before.isdigit() else None
        )[: HISTORY_PAGE + 1]
    )
    older = rows[HISTORY_PAGE - 1].pk if len(rows) > HISTORY_PAGE else None
    context = {
        "deployments": rows[:HISTORY_PAGE],
        "older": older,
        "filters": filters,
        "repositories": Repository.objects.values_list("name", flat=True),
        "environments": [e.name for e in selectors.visible_environments(request.user)],
        "statuses": Status.choices,
    }
    return render(request, partial(request, "deployments/history.html", "table"), context)
