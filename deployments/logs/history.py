"""Reading a deployment's stored log: pages by entry id, and the whole text."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q

from ..models import Deployment, LogLine
from .bus import _EVENT_ID, _MAX_SEQ

# --- reading the history -------------------------------------------------------------


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    """`"1712345678901-3"` → `(1712345678901, 3)`; anything else → None."""
    if not isinstance(value, str):
        return None
    match = _EVENT_ID.fullmatch(value)
    if not match:
        return None
    ms, seq = int(match[1]), int(match[2])
    return (ms, seq) if seq <= _MAX_SEQ else None


def _after(entry: tuple[int, int]) -> Q:
    # The `entry_ms >= ms` term is what PostgreSQL and SQLite turn into an index range
    # bound on (deployment, entry_ms, entry_seq); the OR alone is a filter on every row.
    ms, seq = entry
    return Q(entry_ms__gte=ms) & (Q(entry_ms__gt=ms) | Q(entry_ms=ms, entry_seq__gt=seq))


def _before(entry: tuple[int, int]) -> Q:
    ms, seq = entry
    return Q(entry_ms__lte=ms) & (Q(entry_ms__lt=ms) | Q(entry_ms=ms, entry_seq__lt=seq))


def _deployment_id(deployment: Deployment | int) -> int:
    return deployment.pk if isinstance(deployment, Deployment) else deployment


def history(
    deployment: Deployment | int,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int | None = None,
    tail: int | None = None,
) -> list[LogLine]:
    """Stored lines in stream order. `after`/`before` are exclusive event ids (an
    unparsable one is ignored); `tail` keeps the last N lines, `limit` the first N."""
    lines = LogLine.objects.filter(deployment_id=_deployment_id(deployment))
    if (start := parse_event_id(after)) is not None:
        lines = lines.filter(_after(start))
    if (end := parse_event_id(before)) is not None:
        lines = lines.filter(_before(end))
    if tail is not None:
        newest = list(lines.order_by("-entry_ms", "-entry_seq")[:tail])
        newest.reverse()
        return newest[:limit] if limit is not None else newest
    lines = lines.order_by("entry_ms", "entry_seq")
    return list(lines[:limit] if limit is not None else lines)


def has_lines_before(deployment: Deployment | int, event_id: str) -> bool:
    """Whether any stored line precedes `event_id`: "Load earlier" without a count()."""
    end = parse_event_id(event_id)
    lines = LogLine.objects.filter(deployment_id=_deployment_id(deployment))
    return end is not None and lines.filter(_before(end)).exists()


def log_text(deployment: Deployment | int, *, page: int = 20_000) -> Iterator[str]:
    """The stored log as text, one keyset page (`page` lines) per chunk: linear time,
    memory flat in the log's length. Reads plain tuples, no model instances."""
    base = LogLine.objects.filter(deployment_id=_deployment_id(deployment)).order_by("entry_ms", "entry_seq")
    after: tuple[int, int] | None = None
    while True:
        rows = base.filter(_after(after)) if after is not None else base
        page_rows = list(rows.values_list("entry_ms", "entry_seq", "text")[:page])
        if not page_rows:
            return
        yield "".join(f"{text}\n" for _, _, text in page_rows)
        after = page_rows[-1][:2]
