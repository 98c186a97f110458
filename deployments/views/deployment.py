from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from .. import log_search, logs, permissions, selectors, services
from ..forms import DecisionForm
from ..log_events import lines_json
from .common import client_ip, get_deployment, partial


@login_required
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    get_deployment(request, pk)
    deployment = selectors.deployment_detail(pk)
    stages = list(deployment.stages.all())
    context = {
        "d": deployment,
        "stages": stages,
        "failing_line": log_search.first_failing_line(deployment) if deployment.error else None,
        "position": selectors.queue_position(deployment),
        "can_cancel": permissions.can_cancel(request.user, deployment),
        "can_approve": permissions.can_approve(request.user, deployment),
        "approval": selectors.approval_context(deployment),
        "waiting_on": selectors.approval_waiting_on(request.user, deployment),
        "timeline": selectors.deployment_timeline(deployment, stages, now=timezone.now()),
        "decision_form": DecisionForm(),
    }
    if not getattr(request, "htmx", False):  # the summary fragment has no log
        tail = logs.history(deployment, tail=settings.LOG_PAGE_TAIL)
        context.update(tail=tail, plain_tail=[log_search.plain(line.text) for line in tail])
        context["log"] = log_search.page_state(deployment, tail, stages)
        context["has_earlier"] = context["log"]["first"] > 1
    return render(request, partial(request, "deployments/deployment.html", "summary"), context)


@login_required
def deployment_log_earlier(request: HttpRequest, pk: int) -> HttpResponse:
    """The lines before `before`: JSON for the log renderer (`?format=json`, up to
    `count` of them), else the page's HTML fragment."""
    deployment = get_deployment(request, pk)
    before = request.GET.get("before", "")
    if request.GET.get("format") == "json":
        count = request.GET.get("count", "")
        count = min(int(count), log_search.FETCH_LIMIT) if count.isdigit() and int(count) > 0 else None
        lines = logs.history(deployment, before=before, tail=count or settings.LOG_PAGE_TAIL)
        return JsonResponse({"lines": lines_json(lines)})
    lines = logs.history(deployment, before=before, tail=settings.LOG_PAGE_TAIL)
    return render(
        request,
        "deployments/deployment.html#earlier",
        {"d": deployment, "earlier": lines, "has_earlier": len(lines) == settings.LOG_PAGE_TAIL},
    )


@login_required
@require_POST
def deployment_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = get_deployment(request, pk)
    try:
        services.deployment_cancel(user=request.user, deployment=deployment, source_ip=client_ip(request))
    except services.DeployRefused as exc:
        messages.error(request, str(exc))
        return redirect("deployment_detail", pk=pk)
    messages.info(request, "Cancel requested.")
    return redirect("deployment_detail", pk=pk)


@login_required
@require_POST
def deployment_decide(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    deployment = get_deployment(request, pk)
    form = DecisionForm(request.POST)
    action = services.deployment_approve if decision == "approve" else services.deployment_reject
    if not form.is_valid():
        # Nothing is recorded: a silently dropped comment would change what the decision says.
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    else:
        try:
            action(
                user=request.user,
                deployment=deployment,
                comment=form.cleaned_data["comment"],
                source_ip=client_ip(request),
            )
        except services.DeployRefused as exc:
            messages.error(request, str(exc))
        else:
            verb = "approved" if decision == "approve" else "rejected"
            messages.success(request, f"Deployment #{pk} {verb}.")
    if request.POST.get("next") == "approvals":
        return redirect("approvals")
    return redirect("deployment_detail", pk=pk)
