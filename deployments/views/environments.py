from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .. import permissions, selectors, services
from ..forms import LockForm, ReshipForm
from ..models import Repository
from .common import client_ip, get_environment, partial


@login_required
def environment_detail(request: HttpRequest, name: str) -> HttpResponse:
    env = get_environment(request, name)
    context = {
        "rows": selectors.environment_page(env),
        "env": env,
        "history": selectors.deployment_history(request.user, environment=env.name)[:20],
        "can_lock": permissions.can_lock(request.user, env),
        "can_deploy": permissions.can_deploy(request.user, env),
        "lock_form": LockForm(),
        "freeze": env.active_freeze(),
    }
    return render(request, partial(request, "deployments/environment.html", "queue"), context)


def _act(request: HttpRequest, name: str, action, success: str, **kwargs) -> HttpResponse:  # type: ignore[no-untyped-def]
    env = get_environment(request, name)
    try:
        result = action(user=request.user, environment=env, source_ip=client_ip(request), **kwargs)
    except services.DeployRefused as exc:
        messages.error(request, str(exc))
        return redirect("environment_detail", name=name)
    messages.success(request, success)
    if hasattr(result, "stages"):
        return redirect("deployment_detail", pk=result.pk)
    return redirect("environment_detail", name=name)


@login_required
@require_POST
def environment_lock(request: HttpRequest, name: str) -> HttpResponse:
    form = LockForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A lock needs a reason.")
        return redirect("environment_detail", name=name)
    return _act(request, name, services.environment_lock, "Locked.", **form.cleaned_data)


@login_required
@require_POST
def environment_unlock(request: HttpRequest, name: str) -> HttpResponse:
    return _act(request, name, services.environment_unlock, "Unlocked.")


def _reship_fields(request: HttpRequest) -> dict:  # type: ignore[type-arg]
    form = ReshipForm(request.POST)
    form.is_valid()
    fields = dict(form.cleaned_data)
    name = fields.pop("repository", "")
    fields["repository"] = Repository.objects.filter(name=name).first() if name else None
    return fields


@login_required
@require_POST
def environment_rollback(request: HttpRequest, name: str) -> HttpResponse:
    return _act(request, name, services.deployment_rollback, "Rollback queued.", **_reship_fields(request))


@login_required
@require_POST
def environment_promote(request: HttpRequest, name: str) -> HttpResponse:
    source = get_environment(request, request.POST.get("source", ""))
    env = get_environment(request, name)
    try:
        deployment = services.deployment_promote(
            user=request.user,
            source=source,
            target=env,
            source_ip=client_ip(request),
            **_reship_fields(request),
        )
    except services.DeployRefused as exc:
        messages.error(request, str(exc))
        return redirect("environment_detail", name=name)
    return redirect("deployment_detail", pk=deployment.pk)


@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    inbox = selectors.approval_inbox(request.user)
    items = [{"d": d, "ctx": selectors.approval_context(d)} for d in inbox]
    return render(request, "deployments/approvals.html", {"items": items})
