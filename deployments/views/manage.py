"""The Manage pages: Shipmate's configuration, for admins only (403 for anyone else)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.timezone import now
from django.views.decorators.http import require_POST

from .. import permissions
from ..forms_manage import (
    EnvironmentForm,
    FreezeWindowForm,
    PlacementForm,
    RepositoryForm,
    TargetSettingsForm,
    UserRolesForm,
    VariableForm,
)
from ..models import Environment, FreezeWindow, Placement, PlacementVariable, Repository, Variable
from ..pipeline.git import redact_url
from ..services import environment_settings, freeze_windows, placements, repositories, variables
from ..services import users as user_services
from ..services.deployments import DeployRefused
from .common import client_ip

View = Callable[..., HttpResponse]


def admin_required(view: View) -> View:
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not permissions.can_manage(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def _show_errors(form: forms.Form, exc: ValidationError) -> None:
    """Put a service's ValidationError next to the fields it names (a target setting's
    next to its input: see TargetSettingsForm.add_error)."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        if field == "target_settings" and isinstance(form, TargetSettingsForm):
            form.add_error(None, ValidationError({field: errors}))
        else:
            form.add_error(field if field in form.fields else None, errors)


def _env_url(env: Environment, anchor: str = "") -> str:
    return reverse("manage_environment_edit", args=[env.name]) + (f"#{anchor}" if anchor else "")


@admin_required
def manage_home(request: HttpRequest) -> HttpResponse:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    context = {
        "repositories": [(r, redact_url(r.git_url)) for r in Repository.objects.all()],
        "environments": Environment.objects.all(),
        "placements": Placement.objects.select_related("repository", "environment"),
        "users": [(u, [g.name for g in u.groups.all() if g.name in permissions.ROLE_GROUPS]) for u in users],
    }
    return render(request, "manage/home.html", context)


def _repository_page(request: HttpRequest, repository: Repository | None) -> HttpResponse:
    form = RepositoryForm(request.POST if request.method == "POST" else None, instance=repository)
    if form.is_bound and form.is_valid():
        try:
            saved = repositories.repository_save(
                user=request.user, repository=form.save(commit=False), source_ip=client_ip(request)
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"Repository {saved.name} saved.")
            return redirect("manage_home")
    context = {"form": form, "repository": repository}
    return render(request, "manage/repository.html", context, status=400 if form.errors else 200)


@admin_required
def repository_new(request: HttpRequest) -> HttpResponse:
    return _repository_page(request, None)


@admin_required
def repository_edit(request: HttpRequest, name: str) -> HttpResponse:
    return _repository_page(request, get_object_or_404(Repository, name=name))


def _variable_initial(request: HttpRequest, env: Environment) -> dict[str, Any]:
    """?variable=NAME fills the form to edit one; a secret's value stays out of it."""
    variable = env.variables.filter(name=request.GET.get("variable", "")).first()
    if variable is None:
        return {}
    return {"name": variable.name, "is_secret": variable.is_secret, "value": variable.plain_value}


def _environment_page(
    request: HttpRequest, env: Environment, *, status: int = 200, **bound: Any
) -> HttpResponse:
    context = {
        "env": env,
        "form": bound.get("form") or EnvironmentForm(instance=env),
        "variable_form": bound.get("variable_form") or VariableForm(initial=_variable_initial(request, env)),
        "freeze_form": bound.get("freeze_form") or FreezeWindowForm(),
        "variables": env.variables.all(),
        "freeze_windows": [
            (w, w.when, w.covers(now()))
            for w in env.freeze_windows.order_by("kind", "starts_at", "weekday", "start_time")
        ],
        "has_kubeconfig": bool(env.kubeconfig_encrypted),
    }
    return render(request, "manage/environment.html", context, status=status)


def _save_environment(
    request: HttpRequest, form: EnvironmentForm, env: Environment | None
) -> Environment | None:
    if form.is_valid():
        data = form.cleaned_data
        try:
            return environment_settings.environment_save(
                user=request.user,
                environment=form.save(commit=False),
                deploy_groups=data["deploy_groups"],
                approve_groups=data["approve_groups"],
                kubeconfig=data["kubeconfig"],
                clear_kubeconfig=data["clear_kubeconfig"],
                source_ip=client_ip(request),
            )
        except ValidationError as exc:
            _show_errors(form, exc)
    if env is not None:
        env.refresh_from_db()  # the form changed it in memory
    return None


@admin_required
def environment_new(request: HttpRequest) -> HttpResponse:
    form = EnvironmentForm(request.POST if request.method == "POST" else None)
    if form.is_bound and (env := _save_environment(request, form, None)):
        messages.success(request, f"Environment {env.name} created.")
        return redirect(_env_url(env))
    return render(
        request, "manage/environment.html", {"form": form, "env": None}, status=400 if form.errors else 200
    )


@admin_required
def environment_edit(request: HttpRequest, name: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=name)
    if request.method != "POST":
        return _environment_page(request, env)
    form = EnvironmentForm(request.POST, instance=env)
    if _save_environment(request, form, env):
        messages.success(request, f"Environment {env.name} saved.")
        return redirect(_env_url(env))
    return _environment_page(request, env, status=400, form=form)


@admin_required
@require_POST
def environment_test_connection(request: HttpRequest, name: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=name)
    ok, message = environment_settings.environment_test_connection(
        user=request.user, environment=env, source_ip=client_ip(request)
    )
    if ok:
        messages.success(request, f"Connection OK: {message}")
    else:
        messages.error(request, f"Connection failed: {message}")
    return redirect(_env_url(env, "target"))


@admin_required
@require_POST
def variable_set(request: HttpRequest, name: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=name)
    form = VariableForm(request.POST)
    if form.is_valid():
        try:
            variables.variable_set(
                user=request.user, environment=env, source_ip=client_ip(request), **form.cleaned_data
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"Variable {form.cleaned_data['name']} saved.")
            return redirect(_env_url(env, "variables"))
    return _environment_page(request, env, status=400, variable_form=form)


@admin_required
@require_POST
def variable_delete(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    variable = get_object_or_404(
        Variable.objects.select_related("environment"), pk=pk, environment__name=name
    )
    variables.variable_delete(user=request.user, variable=variable, source_ip=client_ip(request))
    messages.success(request, f"Variable {variable.name} deleted.")
    return redirect(_env_url(variable.environment, "variables"))


@admin_required
@require_POST
def freeze_add(request: HttpRequest, name: str) -> HttpResponse:
    env = get_object_or_404(Environment, name=name)
    form = FreezeWindowForm(request.POST, instance=FreezeWindow(environment=env))
    if form.is_valid():
        try:
            freeze_windows.freeze_create(
                user=request.user, window=form.save(commit=False), source_ip=client_ip(request)
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, "Freeze window added.")
            return redirect(_env_url(env, "freeze"))
    return _environment_page(request, env, status=400, freeze_form=form)


@admin_required
@require_POST
def freeze_delete(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    window = get_object_or_404(
        FreezeWindow.objects.select_related("environment"), pk=pk, environment__name=name
    )
    freeze_windows.freeze_delete(user=request.user, window=window, source_ip=client_ip(request))
    messages.success(request, "Freeze window removed.")
    return redirect(_env_url(window.environment, "freeze"))


@admin_required
def users(request: HttpRequest) -> HttpResponse:
    rows = []
    for user in get_user_model().objects.order_by("username").prefetch_related("groups"):
        roles = [g.name for g in user.groups.all() if g.name in permissions.ROLE_GROUPS]
        rows.append((user, UserRolesForm(initial={"groups": roles}, auto_id=f"id_u{user.pk}_%s")))
    return render(request, "manage/users.html", {"rows": rows})


@admin_required
@require_POST
def user_roles(request: HttpRequest, pk: int) -> HttpResponse:
    target = get_object_or_404(get_user_model(), pk=pk)
    form = UserRolesForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError(form.errors.as_text())
        roles = user_services.user_set_roles(
            user=request.user,
            target_user=target,
            groups=form.cleaned_data["groups"],
            source_ip=client_ip(request),
        )
    except (ValidationError, DeployRefused) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"{target.get_username()}: {', '.join(roles) or 'no roles'}.")
    return redirect("manage_users")


def _placement_page(
    request: HttpRequest,
    placement: Placement | None,
    variable_form: VariableForm | None = None,
    status: int = 200,
) -> HttpResponse:
    posted = request.method == "POST" and variable_form is None
    # ?environment=NAME picks the environment first, so the form shows its target's settings.
    chosen = Environment.objects.filter(name=request.GET.get("environment", "")).first()
    initial = {"environment": chosen} if chosen and placement is None else {}
    form = PlacementForm(request.POST if posted else None, instance=placement, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            saved = placements.placement_save(
                user=request.user, placement=form.save(commit=False), source_ip=client_ip(request)
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"{saved} saved.")
            return redirect("manage_home")
    context = {
        "form": form,
        "placement": placement,
        "variables": placement.variables.all() if placement else [],
        "shared": placement.environment.variables.all() if placement else [],
        "variable_form": variable_form or VariableForm(),
        "environments": Environment.objects.all(),
    }
    return render(request, "manage/placement.html", context, status=400 if form.errors else status)


@admin_required
def placement_new(request: HttpRequest) -> HttpResponse:
    return _placement_page(request, None)


@admin_required
def placement_edit(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = get_object_or_404(Placement, repository__name=repository, environment__name=environment)
    return _placement_page(request, placement)


@admin_required
@require_POST
def placement_variable_set(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = get_object_or_404(Placement, repository__name=repository, environment__name=environment)
    form = VariableForm(request.POST)
    if form.is_valid():
        try:
            variables.variable_set(
                user=request.user, environment=placement, source_ip=client_ip(request), **form.cleaned_data
            )
        except ValidationError as exc:
            _show_errors(form, exc)
        else:
            messages.success(request, f"Variable {form.cleaned_data['name']} saved for {placement}.")
            return redirect(reverse("manage_placement_edit", args=[repository, environment]) + "#variables")
    return _placement_page(request, placement, variable_form=form, status=400)


@admin_required
@require_POST
def placement_variable_delete(
    request: HttpRequest, repository: str, environment: str, pk: int
) -> HttpResponse:
    variable = get_object_or_404(
        PlacementVariable,
        pk=pk,
        placement__repository__name=repository,
        placement__environment__name=environment,
    )
    variables.variable_delete(user=request.user, variable=variable, source_ip=client_ip(request))
    messages.success(request, f"Variable {variable.name} deleted.")
    return redirect(reverse("manage_placement_edit", args=[repository, environment]) + "#variables")
