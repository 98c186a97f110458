"""Server-sent events for a deployment's live log, plus the raw log download.

Every event carries the Redis Stream entry id (stored on `LogLine` too), so
EventSource's `Last-Event-ID` resumes exactly: lines Redis has trimmed or expired
are served from the database, the rest from the stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import redis as redis_lib
from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden, StreamingHttpResponse

from .logs import get_async_redis, history, parse_event_id, stream_key
from .models import Deployment, Stage
from .models.deployment import FINISHED
from .permissions import can_view_deployment
from .templatetags.shipmate import badge_html, line_html, stage_html

logger = logging.getLogger(__name__)

RETRY_MS = 2000
KEEPALIVE_MS = 10_000
# Once the deployment is finished, wait this long for late entries before ending.
FINISH_GRACE_MS = 500
CHUNK = 500
DOWNLOAD_CHUNK = 2000

_NEWLINES = re.compile(r"\r\n|\r|\n")
_UNSAFE_EVENT_CHARS = re.compile(r"[^\w-]")

EntryId = tuple[int, int]


def sse(event: str, data: str, event_id: str | None = None) -> str:
    """One SSE event; data with line breaks becomes several `data:` fields, as the spec requires."""
    fields = [f"id: {event_id}"] if event_id else []
    fields.append(f"event: {event}")
    fields.extend(f"data: {part}" for part in _NEWLINES.split(data))
    return "\n".join(fields) + "\n\n"


def _fmt(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


def _line_event(entry_id: str, stage: str, text: str, *, as_text: bool) -> str:
    return sse("line", text if as_text else line_html(stage, text), entry_id)


def _stage_event(name: str, status: str, entry_id: str | None = None, *, as_text: bool) -> str:
    # ?format=text is for people and scripts reading the stream (curl -N): plain
    # sentences such as "stage build: running", never the page's HTML fragments.
    data = f"stage {name}: {status}" if as_text else stage_html(name, status)
    return sse(f"stage-{_UNSAFE_EVENT_CHARS.sub('-', name)}", data, entry_id)


def _status_event(status: str, entry_id: str | None = None, *, as_text: bool) -> str:
    return sse("status", f"status: {status}" if as_text else badge_html(status), entry_id)


def _render(entry_id: str, fields: dict[str, str], *, as_text: bool) -> str:
    kind = fields.get("type", "")
    if kind == "line":
        return _line_event(entry_id, fields.get("stage", ""), fields.get("text", ""), as_text=as_text)
    if kind == "stage":
        return _stage_event(fields.get("name", ""), fields.get("status", ""), entry_id, as_text=as_text)
    if kind == "status":
        return _status_event(fields.get("status", ""), entry_id, as_text=as_text)
    return ""  # unknown kinds (from a newer worker) are skipped


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
        yield (
            "".join(_line_event(line.event_id, line.stage, line.text, as_text=as_text) for line in lines),
            after,
        )


async def _snapshot(pk: int, *, as_text: bool) -> str:
    # Stage and status events are not stored; after a database replay, send the
    # current state instead. No id, so Last-Event-ID keeps pointing at the last line.
    stages = [stage async for stage in Stage.objects.filter(deployment_id=pk).order_by("position")]
    events = [_stage_event(s.name, s.status, as_text=as_text) for s in stages]
    if status := await _status(pk):
        events.append(_status_event(status, as_text=as_text))
    return "".join(events)


async def _render_entries(
    pk: int, entries: list[tuple[str, dict[str, str]]], last: EntryId, *, as_text: bool
) -> tuple[str, EntryId, bool]:
    """Events for a batch of stream entries, the id of the last one, and whether it ended the log."""
    events = []
    for entry_id, fields in entries:
        if fields.get("type") == "end":
            events.append(await _end(pk, fields.get("status")))
            return "".join(events), last, True
        events.append(_render(entry_id, fields, as_text=as_text))
        last = parse_event_id(entry_id) or last
    return "".join(events), last, False


async def _events(pk: int, resume: EntryId, *, as_text: bool) -> AsyncIterator[str]:
    client = get_async_redis(name=f"shipmate-sse-{pk}")
    key = stream_key(pk)
    last = resume
    yield f"retry: {RETRY_MS}\n\n"
    try:
        first = await client.xrange(key, "-", "+", count=1)
        first_id = parse_event_id(first[0][0]) if first else None
        if first_id is None or first_id > resume:
            replayed = False
            async for chunk, last_stored in _stored_lines(pk, last, first_id, as_text=as_text):
                replayed, last = True, last_stored
                yield chunk
            if replayed or first_id is None:
                yield await _snapshot(pk, as_text=as_text)

        while entries := await client.xrange(key, f"({_fmt(last)}", "+", count=CHUNK):
            chunk, last, ended = await _render_entries(pk, entries, last, as_text=as_text)
            yield chunk
            if ended:
                return

        finished = await _is_finished(pk)
        while True:
            block = FINISH_GRACE_MS if finished else KEEPALIVE_MS
            reply = await client.xread({key: _fmt(last)}, block=block, count=CHUNK)
            if not reply:
                if finished:
                    # Lines the stream never had (Redis was down) or lost (it expired meanwhile).
                    async for chunk, _ in _stored_lines(pk, last, None, as_text=as_text):
                        yield chunk
                    yield await _end(pk)
                    return
                yield ": keepalive\n\n"
                finished = await _is_finished(pk)
                continue
            chunk, last, ended = await _render_entries(pk, reply[0][1], last, as_text=as_text)
            yield chunk
            if ended:
                return
    except redis_lib.RedisError as exc:
        # Serve what the database has and drop the connection: EventSource retries
        # with Last-Event-ID and picks up once Redis is back.
        logger.warning("Live log of deployment %s interrupted: %s", pk, exc)
        async for chunk, _ in _stored_lines(pk, last, None, as_text=as_text):
            yield chunk
    finally:
        await client.aclose()


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
