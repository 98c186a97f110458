"""Server-sent events for a deployment's live log, plus the raw log download.

Every event carries the Redis Stream entry id (stored on `LogLine` too), so
EventSource's `Last-Event-ID` resumes exactly: lines Redis has trimmed or expired
are served from the database, the rest from the stream.

One `_Reader` per deployment and event loop (one per web process under uvicorn)
runs the blocking XREAD and hands each batch to every follower's bounded queue.
A follower that falls behind loses its queued batches, notices the gap (each batch
names the id it was read after) and fills it from the stream and the database.

The page's format sends one `lines` event per batch, a JSON array of
`{id, stage, text, ts}`; `?format=text` keeps one plain `line` event per line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from asgiref.sync import sync_to_async
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)

from . import log_search
from .logs import get_async_redis, history, parse_event_id, stream_key
from .models import Deployment, LogLine, Stage
from .models.deployment import FINISHED
from .permissions import can_view_deployment
from .templatetags.shipmate import badge_html, stage_html

logger = logging.getLogger(__name__)

RETRY_MS = 2000
KEEPALIVE_MS = 10_000
# Once the deployment is finished, wait this long for late entries before ending.
FINISH_GRACE_MS = 500
CHUNK = 500
READ_COUNT = 1000
# Below redis-py 8's default 5 s socket timeout, which get_async_redis keeps.
READ_BLOCK_MS = 2000
# Batches a follower may have queued before it is resynced from history instead.
FOLLOWER_QUEUE = 64
DOWNLOAD_CHUNK = 2000
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


def _fmt(entry: EntryId) -> str:
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


def _lines_event(payloads: list[dict[str, Any]]) -> str:
    # JSON escapes line breaks, so the whole batch is one `data:` field.
    return sse("lines", json.dumps(payloads, ensure_ascii=False, separators=(",", ":")), payloads[-1]["id"])


def _stage_event(name: str, status: str, entry_id: str | None = None, *, as_text: bool) -> str:
    # ?format=text is for people and scripts reading the stream (curl -N): plain
    # sentences such as "stage build: running", never the page's HTML fragments.
    if as_text:
        return sse(f"stage-{_UNSAFE_EVENT_CHARS.sub('-', name)}", f"stage {name}: {status}", entry_id)
    data = {"name": name, "status": status, "html": str(stage_html(name, status))}
    return sse("stage", json.dumps(data), entry_id)


def _status_event(status: str, entry_id: str | None = None, *, as_text: bool) -> str:
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
            events.append(_lines_event(pending))
            pending = []
        if kind == "line":
            events.append(sse("line", fields.get("text", ""), entry_id))
        elif kind == "stage":
            events.append(
                _stage_event(fields.get("name", ""), fields.get("status", ""), entry_id, as_text=as_text)
            )
        elif kind == "status":
            events.append(_status_event(fields.get("status", ""), entry_id, as_text=as_text))
        elif kind == "end":
            return "".join(events), fields.get("status", "")
        # unknown kinds (from a newer worker) are skipped
    if pending:
        events.append(_lines_event(pending))
    return "".join(events), None


def _stored_events(lines: list[LogLine], *, as_text: bool) -> str:
    if as_text:
        return "".join(sse("line", line.text, line.event_id) for line in lines)
    return _lines_event(lines_json(lines))


async def _status(pk: int) -> str | None:
    return await Deployment.objects.filter(pk=pk).values_list("status", flat=True).afirst()


async def _is_finished(pk: int) -> bool:
    status = await _status(pk)
    return status is None or status in FINISHED


async def _end(pk: int, status: str | None = None) -> str:
    return sse("end", status or await _status(pk) or "")


async def _stored_lines(
    pk: int, after: EntryId, before: EntryId | None, *, as_text: bool
) -> AsyncIterator[tuple[str, EntryId]]:
    """Database lines strictly between `after` and `before`, one chunk of events at a time."""
    while True:
        lines = await sync_to_async(history)(
            pk, after=_fmt(after), before=_fmt(before) if before else None, limit=CHUNK
        )
        if not lines:
            return
        after = (lines[-1].entry_ms, lines[-1].entry_seq)
        yield _stored_events(lines, as_text=as_text), after


async def _snapshot(pk: int, *, as_text: bool) -> str:
    # Stage and status events are not stored; after a database replay, send the
    # current state instead. No id, so Last-Event-ID keeps pointing at the last line.
    stages = [stage async for stage in Stage.objects.filter(deployment_id=pk).order_by("position")]
    events = [_stage_event(s.name, s.status, as_text=as_text) for s in stages]
    if status := await _status(pk):
        events.append(_status_event(status, as_text=as_text))
    return "".join(events)


# --- one reader per deployment, fanned out -------------------------------------------


@dataclass
class Batch:
    """Entries one XREAD returned after `after`; rendered once per format and start."""

    after: EntryId
    entries: list[Entry]
    ids: list[EntryId]
    _rendered: dict[tuple[bool, int], tuple[str, str | None]] = field(default_factory=dict)

    def render(self, start: int, *, as_text: bool) -> tuple[str, str | None]:
        key = (as_text, start)
        if key not in self._rendered:
            self._rendered[key] = render_entries(self.entries[start:], as_text=as_text)
        return self._rendered[key]


class ReaderFailed(Exception):
    pass


class _Reader:
    def __init__(self, pk: int, hub: dict[int, _Reader]) -> None:
        self.pk = pk
        self.hub = hub
        self.followers: set[asyncio.Queue[Batch | ReaderFailed]] = set()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"shipmate-log-reader-{pk}")

    def subscribe(self) -> asyncio.Queue[Batch | ReaderFailed]:
        queue: asyncio.Queue[Batch | ReaderFailed] = asyncio.Queue(maxsize=FOLLOWER_QUEUE)
        self.followers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Batch | ReaderFailed]) -> None:
        self.followers.discard(queue)
        if not self.followers and self.hub.get(self.pk) is self:
            del self.hub[self.pk]
            self.task.cancel()

    def _deliver(self, item: Batch | ReaderFailed) -> None:
        for queue in self.followers:
            if queue.full():
                # Never block the others or grow: this follower refills the gap from history.
                while not queue.empty():
                    queue.get_nowait()
            queue.put_nowait(item)

    async def _run(self) -> None:
        client = get_async_redis(name=f"shipmate-sse-{self.pk}")
        key = stream_key(self.pk)
        try:
            newest = await client.xrevrange(key, "+", "-", count=1)
            last = parse_event_id(newest[0][0]) if newest else None
            last = last or (0, 0)
            while True:
                reply = await client.xread({key: _fmt(last)}, block=READ_BLOCK_MS, count=READ_COUNT)
                if not reply:
                    continue
                entries = reply[0][1]
                ids = [parse_event_id(entry_id) or last for entry_id, _ in entries]
                self._deliver(Batch(after=last, entries=entries, ids=ids))
                last = ids[-1]
        except redis_lib.RedisError as exc:
            logger.warning("Live log reader of deployment %s stopped: %s", self.pk, exc)
            if self.hub.get(self.pk) is self:
                del self.hub[self.pk]
            self._deliver(ReaderFailed(str(exc)))
        finally:
            await client.aclose()


# asyncio Redis connections belong to one loop: one hub per running loop.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Reader]] = weakref.WeakKeyDictionary()


def _reader(pk: int) -> _Reader:
    hub = _hubs.setdefault(asyncio.get_running_loop(), {})
    if pk not in hub:
        hub[pk] = _Reader(pk, hub)
    return hub[pk]


def reader_count(pk: int) -> int:
    """How many readers this loop runs for the deployment (0 or 1); for tests."""
    return int(pk in _hubs.get(asyncio.get_running_loop(), {}))


# --- one follower ----------------------------------------------------------------------


async def _catch_up(
    pk: int, last: EntryId, upto: EntryId | None, *, as_text: bool
) -> AsyncIterator[tuple[str, EntryId, str | None]]:
    """Everything after `last` (up to `upto`, or the stream's end): the database for what
    Redis no longer has, then the stream. Yields (events, last id, end status or None)."""
    client = get_async_redis(name=f"shipmate-sse-replay-{pk}")
    key = stream_key(pk)
    try:
        first = await client.xrange(key, "-", "+", count=1)
        first_id = parse_event_id(first[0][0]) if first else None
        if first_id is None or first_id > last:
            replayed = False
            before = first_id if upto is None or first_id is None else min(first_id, (upto[0], upto[1] + 1))
            async for chunk, last_stored in _stored_lines(pk, last, before, as_text=as_text):
                replayed, last = True, last_stored
                yield chunk, last, None
            if replayed or first_id is None:
                yield await _snapshot(pk, as_text=as_text), last, None
        end = _fmt(upto) if upto else "+"
        while (upto is None or last < upto) and (
            entries := await client.xrange(key, f"({_fmt(last)}", end, count=CHUNK)
        ):
            chunk, ended = render_entries(entries, as_text=as_text)
            last = parse_event_id(entries[-1][0]) or last
            yield chunk, last, ended
            if ended is not None:
                return
    finally:
        await client.aclose()


@dataclass
class _Cursor:
    last: EntryId


async def _follow(pk: int, cursor: _Cursor, *, as_text: bool) -> AsyncIterator[str]:
    reader = _reader(pk)
    queue = reader.subscribe()
    try:
        async with aclosing(_catch_up(pk, cursor.last, None, as_text=as_text)) as replay:
            async for chunk, cursor.last, ended in replay:
                yield chunk
                if ended is not None:
                    yield await _end(pk, ended)
                    return
        finished = await _is_finished(pk)
        while True:
            timeout = (FINISH_GRACE_MS if finished else KEEPALIVE_MS) / 1000
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                if finished:
                    # Lines the stream never had (Redis was down) or lost (it expired meanwhile).
                    async for chunk, stored in _stored_lines(pk, cursor.last, None, as_text=as_text):
                        cursor.last = stored
                        yield chunk
                    yield await _end(pk)
                    return
                yield ": keepalive\n\n"
                finished = await _is_finished(pk)
                continue
            if isinstance(item, ReaderFailed):
                raise redis_lib.ConnectionError(str(item))
            if item.ids[-1] <= cursor.last:
                continue
            if item.after > cursor.last:
                # Fell behind (or joined while the reader started): fill the gap from history.
                async with aclosing(_catch_up(pk, cursor.last, item.after, as_text=as_text)) as replay:
                    async for chunk, cursor.last, ended in replay:
                        yield chunk
                        if ended is not None:
                            yield await _end(pk, ended)
                            return
            start = next(i for i, entry_id in enumerate(item.ids) if entry_id > cursor.last)
            chunk, ended = item.render(start, as_text=as_text)
            cursor.last = item.ids[-1]
            yield chunk
            if ended is not None:
                yield await _end(pk, ended)
                return
    finally:
        reader.unsubscribe(queue)


async def _events(pk: int, resume: EntryId, *, as_text: bool) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    cursor = _Cursor(resume)
    try:
        async with aclosing(_follow(pk, cursor, as_text=as_text)) as events:
            async for chunk in events:
                yield chunk
    except redis_lib.RedisError as exc:
        # Serve what the database has and drop the connection: EventSource retries
        # with Last-Event-ID and picks up once Redis is back.
        logger.warning("Live log of deployment %s interrupted: %s", pk, exc)
        async for chunk, _ in _stored_lines(pk, cursor.last, None, as_text=as_text):
            yield chunk


async def _viewable(request: HttpRequest, pk: int) -> Deployment | HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseForbidden("Log in to see this deployment.", content_type="text/plain")
    deployment = await Deployment.objects.filter(pk=pk).afirst()
    if deployment is None:
        raise Http404("No such deployment")
    if not await sync_to_async(can_view_deployment)(user, deployment):
        return HttpResponseForbidden("You cannot see this deployment.", content_type="text/plain")
    return deployment


async def deployment_events(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = await _viewable(request, pk)
    if isinstance(deployment, HttpResponse):
        return deployment
    resume = (
        parse_event_id(request.headers.get("Last-Event-ID"))
        or parse_event_id(request.GET.get("after"))
        or (0, 0)
    )
    as_text = request.GET.get("format") == "text"
    response = StreamingHttpResponse(
        _events(deployment.pk, resume, as_text=as_text), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _log_text(pk: int) -> AsyncIterator[str]:
    # Keyset pages instead of QuerySet.iterator(): under ASGI a sync iterator would
    # be read whole into memory before the first byte goes out.
    after: str | None = None
    while lines := await sync_to_async(history)(pk, after=after, limit=DOWNLOAD_CHUNK):
        yield "".join(f"{line.text}\n" for line in lines)
        after = lines[-1].event_id


async def deployment_log_download(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = await _viewable(request, pk)
    if isinstance(deployment, HttpResponse):
        return deployment
    response = StreamingHttpResponse(_log_text(deployment.pk), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="deployment-{deployment.pk}.log"'
    return response


async def deployment_log_search(request: HttpRequest, pk: int) -> HttpResponse:
    """Stored lines matching `q`, with line numbers: the page's search reaches lines it
    has not rendered. Permission-checked like the download."""
    deployment = await _viewable(request, pk)
    if isinstance(deployment, HttpResponse):
        return deployment
    query = request.GET.get("q", "").strip()
    if not query:
        return JsonResponse({"query": "", "matches": [], "more": False})
    matches, more = await sync_to_async(log_search.search)(deployment.pk, query[:200])
    return JsonResponse({"query": query, "matches": matches, "more": more})
