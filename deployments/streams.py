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
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    JsonResponse,
    StreamingHttpResponse,
)

from . import log_search
from .log_events import EntryId, fmt, render_entries, sse, stage_event, status_event, stored_events
from .log_fanout import ReaderFailed, follower_reader
from .logs import get_async_redis, history, log_text, parse_event_id, stream_key
from .models import Deployment, Stage
from .models.deployment import FINISHED
from .permissions import can_view_deployment

logger = logging.getLogger(__name__)

RETRY_MS = 2000
KEEPALIVE_MS = 10_000
# Once the deployment is finished, wait this long for late entries before ending.
FINISH_GRACE_MS = 500
CHUNK = 500


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
            pk, after=fmt(after), before=fmt(before) if before else None, limit=CHUNK
        )
        if not lines:
            return
        after = (lines[-1].entry_ms, lines[-1].entry_seq)
        yield stored_events(lines, as_text=as_text), after


async def _snapshot(pk: int, *, as_text: bool) -> str:
    # Stage and status events are not stored; after a database replay, send the
    # current state instead. No id, so Last-Event-ID keeps pointing at the last line.
    stages = [stage async for stage in Stage.objects.filter(deployment_id=pk).order_by("position")]
    events = [stage_event(s.name, s.status, as_text=as_text) for s in stages]
    if status := await _status(pk):
        events.append(status_event(status, as_text=as_text))
    return "".join(events)


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
        end = fmt(upto) if upto else "+"
        while (upto is None or last < upto) and (
            entries := await client.xrange(key, f"({fmt(last)}", end, count=CHUNK)
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
    reader = follower_reader(pk)
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


async def viewable_deployment(user: Any, pk: int) -> Deployment:
    """The deployment `user` (authenticated) may see; Http404 or PermissionDenied otherwise.
    The pages' views below and the API's event stream share it."""
    deployment = await Deployment.objects.filter(pk=pk).afirst()
    if deployment is None:
        raise Http404("No such deployment")
    if not await sync_to_async(can_view_deployment)(user, deployment):
        raise PermissionDenied("You cannot see this deployment.")
    return deployment


async def _viewable(request: HttpRequest, pk: int) -> Deployment | HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseForbidden("Log in to see this deployment.", content_type="text/plain")
    try:
        return await viewable_deployment(user, pk)
    except PermissionDenied as exc:
        return HttpResponseForbidden(str(exc), content_type="text/plain")


def event_stream(request: HttpRequest, deployment: Deployment) -> StreamingHttpResponse:
    """The live log from where `Last-Event-ID` (or `?after=`) points, in the page's format
    or, with `?format=text`, one `line` event per line."""
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


async def deployment_events(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = await _viewable(request, pk)
    if isinstance(deployment, HttpResponse):
        return deployment
    return event_stream(request, deployment)


async def _log_text(pk: int) -> AsyncIterator[str]:
    # Keyset pages of plain tuples (logs.log_text), one thread hop per page: under ASGI a
    # sync iterator would be read whole into memory before the first byte goes out.
    pages = log_text(pk)
    while (page := await sync_to_async(next)(pages, None)) is not None:
        yield page


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
