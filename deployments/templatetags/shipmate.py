"""HTML fragments shared by the pages and the live-log stream, so both render alike."""

from __future__ import annotations

import re
from datetime import timedelta

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from deployments.models import StageStatus, Status
from deployments.models.deployment import short_digest

register = template.Library()

_LABELS: dict[str, str] = {**dict(StageStatus.choices), **dict(Status.choices)}
_UNSAFE_CLASS_CHARS = re.compile(r"[^a-z0-9_-]")


def _css_token(value: str) -> str:
    # Values end up inside class and id attributes; keep them one harmless token.
    return _UNSAFE_CLASS_CHARS.sub("-", str(value).lower()) or "unknown"


@register.simple_tag(name="badge")
def badge_html(status: str, label: str | None = None) -> SafeString:
    text = label if label is not None else _LABELS.get(status, str(status).replace("_", " ").capitalize())
    return format_html('<span class="badge badge-{}">{}</span>', _css_token(status), text)


@register.simple_tag(name="stage")
def stage_html(stage_name: str, status: str, duration: timedelta | None = None) -> SafeString:
    took = format_html(' <span class="stage-time">{}</span>', seconds(duration)) if duration else ""
    return format_html(
        # The element names its own SSE event, so it keeps listening after it
        # replaces itself (outerHTML) with the next update.
        '<li class="stage stage-{}" id="stage-{}" sse-swap="stage-{}" hx-swap="outerHTML">'
        '<span class="stage-name">{}</span> {}{}</li>',
        _css_token(status),
        _css_token(stage_name),
        _css_token(stage_name),
        stage_name,
        badge_html(status),
        took,
    )


@register.simple_tag(name="log_line")
def line_html(stage: str, text: str) -> SafeString:
    return format_html('<div class="line" data-stage="{}">{}</div>', stage, text)


@register.filter
def seconds(value: timedelta | None) -> str:
    """A duration the way a log reader wants it: 2.3 s, 4 min 05 s, 1 h 02 min."""
    if value is None:
        return ""
    total = value.total_seconds()
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def redact_url(value: str) -> str:
    """A git URL with any credentials in it replaced, as the logs show it."""
    from deployments.pipeline.git import redact_url as redact

    return redact(value or "")


@register.filter(name="short_digest")
def short_digest_filter(value: str) -> str:
    return short_digest(value or "")
