"""Status badges: one small SVG per placement, for READMEs and wikis."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from .. import permissions
from ..models import Deployment, Placement, Status

# What a badge tells: the newest run that built, rolled out or failed (not one waiting).
SHOWN = [Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.ROLLED_BACK]
COLOURS = {
    Status.SUCCEEDED: "#1f8a4c",
    Status.FAILED: "#c62f2f",
    Status.ROLLED_BACK: "#b26a00",
    Status.RUNNING: "#2357d9",
}
MAX_AGE = 60
MAX_REF = 32


def _width(text: str) -> int:
    # About 7 px a character in 11 px Verdana, as shields.io measures it, plus padding.
    return 7 * len(text) + 12


@require_GET
def placement_badge(request: HttpRequest, repository: str, environment: str) -> HttpResponse:
    placement = (
        Placement.objects.select_related("repository", "environment")
        .filter(repository__name=repository, environment__name=environment)
        .first()
    )
    public = placement is not None and placement.repository.public_badges
    if placement is None or not (
        public or permissions.can_view_environment(request.user, placement.environment)
    ):
        raise Http404  # never 403: that would tell which applications exist
    latest = (
        Deployment.objects.filter(repository=placement.repository, environment=placement.environment)
        .filter(status__in=SHOWN)
        .order_by("-created_at", "-id")
        .only("ref", "status")
        .first()
    )
    label = environment
    if latest is None:
        message, colour = "not deployed", "#6b7385"
    else:
        ref = latest.ref if len(latest.ref) <= MAX_REF else latest.ref[: MAX_REF - 1] + "…"
        message, colour = f"{ref} · {latest.get_status_display().lower()}", COLOURS[latest.status]
    left, right = _width(label), _width(message)
    svg = render_to_string(
        "deployments/badge.svg",
        {"label": label, "message": message, "colour": colour, "left": left, "right": right,
         "width": left + right, "left_mid": left / 2, "right_mid": left + right / 2},
    )  # fmt: skip
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Cache-Control"] = f"{'public' if public else 'private'}, max-age={MAX_AGE}"
    # Opened on its own, the SVG may run nothing and load nothing.
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
