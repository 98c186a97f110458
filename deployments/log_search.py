"""Reads over a deployment's stored log for the log page: line numbers, search, the
first failing line and the page's initial state. `logs.history` stays the pager."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.urls import reverse

from .log_events import lines_json
from .models import Deployment, LogLine, Stage

SEARCH_LIMIT = 1000
SEARCH_SNIPPET = 200
# Lines one "load earlier" (or a jump to an old line) may fetch at once.
FETCH_LIMIT = 20_000

# ANSI/VT escape sequences and other control characters (tab excepted).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f]"
)


def view_max_lines() -> int:
    """Lines the page keeps rendered while following (settings.LOG_VIEW_MAX_LINES)."""
    return int(settings.LOG_VIEW_MAX_LINES)


def plain(text: str) -> str:
    """A line as plain text: the last state of a carriage-return progress bar, no escape codes."""
    segments = [_CONTROL.sub("", part) for part in text.split("\r")]
    return next((s for s in reversed(segments) if s), "")


def _up_to(ms: int, seq: int) -> Q:
    return Q(entry_ms__lt=ms) | Q(entry_ms=ms, entry_seq__lte=seq)


def line_number(deployment_id: int, line: LogLine) -> int:
    """1-based position of a stored line in its log: the number the writer gave it, or,
    for a line stored before lines were numbered, its place counted."""
    if line.number:
        return line.number
    return LogLine.objects.filter(_up_to(line.entry_ms, line.entry_seq), deployment_id=deployment_id).count()


def search(deployment_id: int, query: str, *, limit: int = SEARCH_LIMIT) -> tuple[list[dict[str, Any]], bool]:
    """Stored lines containing `query` (case-insensitive), with their line numbers, in
    log order; and whether more matched than `limit`."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    table = connection.ops.quote_name(LogLine._meta.db_table)
    # Numbered over the whole log first, filtered after: a WHERE on the text inside
    # the window would number the matches instead of the lines.
    sql = (
        "SELECT n, entry_ms, entry_seq, stage, text FROM ("
        "SELECT ROW_NUMBER() OVER (ORDER BY entry_ms, entry_seq) AS n, entry_ms, entry_seq, stage, text "
        f"FROM {table} WHERE deployment_id = %s) numbered "
        "WHERE UPPER(text) LIKE UPPER(%s) ESCAPE '\\' ORDER BY n LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [deployment_id, f"%{escaped}%", limit + 1])
        rows = cursor.fetchall()
    matches = [
        {"n": n, "id": f"{ms}-{seq}", "stage": stage, "text": plain(text)[:SEARCH_SNIPPET]}
        for n, ms, seq, stage, text in rows[:limit]
    ]
    return matches, len(rows) > limit


def first_failing_line(deployment: Deployment) -> int | None:
    """The line an error banner points at: the first line of the failed stage, else the
    last line that repeats the error, else none."""
    lines = LogLine.objects.filter(deployment_id=deployment.pk)
    failed = Stage.objects.filter(deployment_id=deployment.pk, status="failed").order_by("position").first()
    line = None
    if failed is not None:
        line = lines.filter(stage=failed.name[:20]).order_by("entry_ms", "entry_seq").first()
    if line is None and deployment.error:
        needle = deployment.error.strip().splitlines()[0][:100] if deployment.error.strip() else ""
        if needle:
            line = lines.filter(text__contains=needle).order_by("-entry_ms", "-entry_seq").first()
    return line_number(deployment.pk, line) if line is not None else None


def page_state(deployment: Deployment, tail: list[LogLine], stages: list[Stage]) -> dict[str, Any]:
    """What the log renderer starts from (see static/js/deployment.js)."""

    first = line_number(deployment.pk, tail[0]) if tail else 1
    return {
        "lines": lines_json(tail),
        "first": first,
        "last_id": tail[-1].event_id if tail else "0-0",
        "live": not deployment.is_finished,
        "max_lines": view_max_lines(),
        "fetch_limit": FETCH_LIMIT,
        "stages": {
            s.name: {"status": s.status, "duration": s.duration.total_seconds() if s.duration else None}
            for s in stages
        },
        "events_url": reverse("deployment_events", args=[deployment.pk]),
        "earlier_url": reverse("deployment_log_earlier", args=[deployment.pk]),
        "search_url": reverse("deployment_log_search", args=[deployment.pk]),
    }
