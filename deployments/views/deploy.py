from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .. import selectors, services
from ..forms import DeployForm
from .common import client_ip


@login_required
def deploy(request: HttpRequest) -> HttpResponse:
    repositories, environments, placed = selectors.deployable_choices(request.user)
    initial = {"environment": request.GET.get("environment"), "repository": request.GET.get("repository")}
    form = DeployForm(
        request.POST or None, repositories=repositories, environments=environments, initial=initial
    )
    confirm = ""
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.deployment_request(
                user=request.user,
                repository=form.cleaned_data["repository"],
                environment=form.cleaned_data["environment"],
                ref=form.cleaned_data["ref"],
                break_glass_reason=form.cleaned_data["break_glass_reason"],
                confirm_older=form.cleaned_data["confirm_older"],
                source_ip=client_ip(request),
            )
        except services.NeedsConfirmation as exc:
            confirm = str(exc)
        except services.DeployRefused as exc:
            form.add_error(None, str(exc))
        else:
            # Transient: the page drops it once the run moves on (js/deployment.js).
            messages.success(request, f"Deployment #{deployment.pk} queued.", extra_tags="transient")
            return redirect("deployment_detail", pk=deployment.pk)
    if not environments:
        form.add_error(None, "You may not deploy to any environment.")
    status = 400 if form.errors else 409 if confirm else 200
    defaults = {r.pk: r.default_branch for r in repositories}
    context = {"form": form, "defaults": defaults, "placed": placed, "confirm": confirm}
    return render(request, "deployments/deploy.html", context, status=status)
