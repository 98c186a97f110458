from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from .. import permissions
from ..models import Deployment, Environment


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def partial(request: HttpRequest, template: str, name: str) -> str:
    """The whole page, or only the named partial when htmx asks for it."""
    return f"{template}#{name}" if getattr(request, "htmx", False) else template


def get_deployment(request: HttpRequest, pk: int, check: Any = permissions.can_view_deployment) -> Deployment:
    deployment = get_object_or_404(Deployment.objects.select_related("environment", "repository"), pk=pk)
    if not check(request.user, deployment):
        raise PermissionDenied
    return deployment


def get_environment(
    request: HttpRequest, name: str, check: Any = permissions.can_view_environment
) -> Environment:
    environment = get_object_or_404(Environment, name=name)
    if not check(request.user, environment):
        raise PermissionDenied
    return environment
