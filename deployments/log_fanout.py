"""One Redis reader per deployment per web process, fanned out to all of that process's
followers of the deployment's live log. Each follower has a bounded queue; one that
falls behind is emptied and refills the gap from history, so it never blocks the
others or grows memory."""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

import redis as redis_lib

from .log_events import Entry, EntryId, fmt, render_entries
from .logs import get_async_redis, parse_event_id, stream_key

logger = logging.getLogger(__name__)

READ_COUNT = 1000
# Below redis-py 8's default 5 s socket timeout, which get_async_redis keeps.
READ_BLOCK_MS = 2000
# Batches a follower may have queued before it is resynced from history instead.
FOLLOWER_QUEUE = 64


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
                reply = await client.xread({key: fmt(last)}, block=READ_BLOCK_MS, count=READ_COUNT)
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


def follower_reader(pk: int) -> _Reader:
    hub = _hubs.setdefault(asyncio.get_running_loop(), {})
    if pk not in hub:
        hub[pk] = _Reader(pk, hub)
    return hub[pk]


def reader_count(pk: int) -> int:
    """How many readers this loop runs for the deployment (0 or 1); for tests."""
    return int(pk in _hubs.get(asyncio.get_running_loop(), {}))
