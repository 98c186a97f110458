"""The live side of the log: Redis clients, stream keys and events for live viewers."""

from __future__ import annotations

import functools
import logging
import re

import redis as redis_lib
import redis.asyncio as redis_async
from django.conf import settings
from django.db import transaction
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

# After a failed XADD, skip Redis this long: a hung Redis must not stall the build
# for a socket timeout per line.
REDIS_RETRY_AFTER = 5.0

_EVENT_ID = re.compile(r"\s*(\d{1,18})-(\d{1,10})\s*")
_MAX_SEQ = 2**31 - 1  # LogLine.entry_seq is a 32-bit column


def stream_key(deployment_id: int) -> str:
    return f"shipmate:log:{deployment_id}"


def discard_stream(deployment_id: int) -> None:
    try:
        get_redis().delete(stream_key(deployment_id))
    except redis_lib.RedisError:
        logger.warning("could not discard the old log stream of deployment %s", deployment_id)


# --- Redis clients ---------------------------------------------------------------


@functools.cache
def _sync_client(url: str) -> redis_lib.Redis:
    # Few, short retries: a build logging through a dead Redis should fall back to
    # the database quickly rather than sleep through redis-py's default backoff.
    return redis_lib.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=10,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


def get_redis() -> redis_lib.Redis:
    """The process-wide sync client (thread-safe: it holds a connection pool)."""
    return _sync_client(settings.REDIS_URL)


def get_async_redis(name: str | None = None) -> redis_async.Redis:
    """A new asyncio client; the caller closes it with `await client.aclose()`.

    asyncio connections belong to one event loop, so none is shared. No socket
    timeout: XREAD BLOCK waits longer than any sensible one. `name` shows in
    Redis' CLIENT LIST, which tells open live-log connections apart.
    """
    return redis_async.Redis.from_url(
        settings.REDIS_URL, decode_responses=True, socket_connect_timeout=5, client_name=name
    )


def publish_event(deployment_id: int, kind: str, **data: str) -> bool:
    """Sends one event (e.g. a status change made in the web process) to live viewers.

    The database stays the source of truth, so a Redis failure is logged, not raised.
    """
    try:
        get_redis().xadd(
            stream_key(deployment_id),
            {"type": kind, **data},
            maxlen=settings.LOG_STREAM_MAXLEN,
            approximate=True,
        )
    except redis_lib.RedisError as exc:
        logger.warning("Log event %s for deployment %s not published: %s", kind, deployment_id, exc)
        return False
    return True


def publish_status(deployment_id: int, status: str, *, end: bool = False) -> None:
    """Tell live viewers about a status change once the transaction commits."""

    def send() -> None:
        publish_event(deployment_id, "status", status=status)
        if end:
            publish_event(deployment_id, "end", status=status)

    transaction.on_commit(send)
