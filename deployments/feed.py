"""Which placements changed, pushed to the matrix page.

One capped Redis stream: every status change (and a new request, a lock, an unlock)
adds an entry naming the environment and the application. The dashboard follows it
over SSE and re-renders its matrix a moment later, so a cell changes as the run does,
not on a timer. The entries carry ids only; what a viewer may see is decided when the
matrix is rendered for them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

import redis as redis_lib
from django.db import transaction

from .logs import get_async_redis, get_redis

logger = logging.getLogger(__name__)

FEED_KEY = "shipmate:feed:placements"
FEED_MAXLEN = 1000
KEEPALIVE_MS = 15_000


def placement_changed(environment_id: int, repository_id: int | None = None) -> None:
    """Tell matrix viewers once the transaction commits; `repository_id=None` means every
    application in the environment (a lock, an unlock)."""

    def send() -> None:
        try:
            get_redis().xadd(
                FEED_KEY,
                {"environment": str(environment_id), "repository": str(repository_id or "")},
                maxlen=FEED_MAXLEN,
                approximate=True,
            )
        except redis_lib.RedisError as exc:  # the page's slow refresh catches up
            logger.warning("placement change of environment %s not published: %s", environment_id, exc)

    transaction.on_commit(send)


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def changes(environment_ids: Iterable[int]) -> AsyncIterator[str]:
    """SSE events for changes in the given environments: one `changed` event per batch
    of entries read, and a comment every KEEPALIVE_MS so proxies keep the connection."""
    visible = {str(pk) for pk in environment_ids}
    client = get_async_redis("shipmate-feed")
    try:
        # Read on from the newest entry now, not from "$" at the first XREAD: a change
        # between the "ready" event (the page refreshes on it) and that read is not lost.
        try:
            newest = await client.xrevrange(FEED_KEY, count=1)
        except redis_lib.RedisError:
            return
        last = newest[0][0] if newest else "0-0"
        yield "retry: 2000\n\n" + sse("ready", "")
        while True:
            try:
                batches = await client.xread({FEED_KEY: last}, block=KEEPALIVE_MS, count=200)
            except redis_lib.RedisError:
                return  # EventSource reconnects after `retry`; the page refreshes on open
            if not batches:
                yield ": keepalive\n\n"
                continue
            changed = set()
            for _key, entries in batches:
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get("environment") in visible:
                        changed.add(f"{fields['environment']}:{fields.get('repository', '')}")
            if changed:
                yield sse("changed", " ".join(sorted(changed)))
    finally:
        await client.aclose()
