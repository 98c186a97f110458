"""The log's server-sent events: one `lines` event (a JSON array) per batch of lines for
the page, plain `line` events for `?format=text`, stage and status events, and the
payload the page's renderer takes for each line."""

from __future__ import annotations

import json
import re
from typing import Any

from .models import LogLine
from .templatetags.shipmate import badge_html, stage_html

# The page shows at most this much of one line; the raw download keeps it whole.
VIEW_LINE_CHARS = 10_000

_NEWLINES = re.compile(r"\r\n|\r|\n")
_UNSAFE_EVENT_CHARS = re.compile(r"[^\w-]")

EntryId = tuple[int, int]
Entry = tuple[str, dict[str, str]]


def sse(event: str, data: str, event_id: str | None = None) -> str:
    """One SSE event; data with line breaks becomes several `data:` fields, as the spec requires."""
    fields = [f"id: {event_id}"] if event_id else []
    fields.append(f"event: {event}")
    fields.extend(f"data: {part}" for part in _NEWLINES.split(data))
    return "\n".join(fields) + "\n\n"


def fmt(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


def line_payload(entry_id: str, stage: str, text: str) -> dict[str, Any]:
    """A line as the page's renderer takes it; a huge line is cut here, not in the browser."""
    ms = entry_id.partition("-")[0]
    payload: dict[str, Any] = {
        "id": entry_id,
        "stage": stage,
        "text": text,
        "ts": int(ms) if ms.isdigit() else 0,
    }
    if len(text) > VIEW_LINE_CHARS:
        payload["text"] = text[:VIEW_LINE_CHARS]
        payload["full"] = len(text)
    return payload


def lines_json(lines: list[LogLine]) -> list[dict[str, Any]]:
    return [line_payload(line.event_id, line.stage, line.text) for line in lines]


def lines_event(payloads: list[dict[str, Any]]) -> str:
    # JSON escapes line breaks, so the whole batch is one `data:` field.
    return sse("lines", json.dumps(payloads, ensure_ascii=False, separators=(",", ":")), payloads[-1]["id"])


def stage_event(name: str, status: str, entry_id: str | None = None, *, as_text: bool) -> str:
    # ?format=text is for people and scripts reading the stream (curl -N): plain
    # sentences such as "stage build: running", never the page's HTML fragments.
    if as_text:
        return sse(f"stage-{_UNSAFE_EVENT_CHARS.sub('-', name)}", f"stage {name}: {status}", entry_id)
    data = {"name": name, "status": status, "html": str(stage_html(name, status))}
    return sse("stage", json.dumps(data), entry_id)


def status_event(status: str, entry_id: str | None = None, *, as_text: bool) -> str:
    if as_text:
        return sse("status", f"status: {status}", entry_id)
    return sse("status", json.dumps({"status": status, "html": str(badge_html(status))}), entry_id)


def render_entries(entries: list[Entry], *, as_text: bool) -> tuple[str, str | None]:
    """Events for stream entries up to an `end` entry, and that entry's status ("" if it
    has none, None if the batch has no end). Consecutive lines become one `lines` event."""
    events: list[str] = []
    pending: list[dict[str, Any]] = []
    for entry_id, fields in entries:
        kind = fields.get("type", "")
        if kind == "line" and not as_text:
            pending.append(line_payload(entry_id, fields.get("stage", ""), fields.get("text", "")))
            continue
        if pending:
            events.append(lines_event(pending))
            pending = []
        if kind == "line":
            events.append(sse("line", fields.get("text", ""), entry_id))
        elif kind == "stage":
            events.append(
                stage_event(fields.get("name", ""), fields.get("status", ""), entry_id, as_text=as_text)
            )
        elif kind == "status":
            events.append(status_event(fields.get("status", ""), entry_id, as_text=as_text))
        elif kind == "end":
            return "".join(events), fields.get("status", "")
        # unknown kinds (from a newer worker) are skipped
    if pending:
        events.append(lines_event(pending))
    return "".join(events), None


def stored_events(lines: list[LogLine], *, as_text: bool) -> str:
    if as_text:
        return "".join(sse("line", line.text, line.event_id) for line in lines)
    return lines_event(lines_json(lines))
