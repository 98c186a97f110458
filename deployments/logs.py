"""The log bus: Redis Streams carry live lines, the database keeps the history.

The worker writes through `LogWriter`: each line is masked, appended with XADD to
`shipmate:log:<deployment id>` and buffered for a batched insert into `LogLine`,
keeping the stream entry id so a client can resume from either store.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any
from urllib.parse import quote, quote_plus

import redis as redis_lib
import redis.asyncio as redis_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .models import Deployment, LogLine

logger = logging.getLogger(__name__)

MASK = "****"
MIN_SECRET_LENGTH = 4
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


# --- masking -------------------------------------------------------------------


def _forms(secret: str) -> set[str]:
    """The spellings of `secret` that commonly end up in logs.

    Base64 is only caught when the secret is encoded on its own: inside a larger
    base64 blob (say a whole `user:password` header or a config file) its encoding
    depends on the byte offset and the neighbouring bytes, so no fixed string
    matches it.
    """
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms.update((encoded, encoded.rstrip("=")))
    return forms


class Masker:
    """Replaces secrets and their encoded forms with `****`, using one compiled regex."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            forms |= _forms(secret)
            # Builds print multi-line secrets (keys, certificates) one line at a time.
            if "\n" in secret:
                for part in secret.splitlines():
                    if len(part.strip()) >= 8:
                        forms |= _forms(part.strip())
        forms = {f for f in forms if len(f) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._regex = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._regex is None:
            return text
        return self._regex.sub(MASK, text)


def mask(text: str, secrets: Iterable[str]) -> str:
    return Masker(secrets)(text)


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


# --- writer --------------------------------------------------------------------


class LogWriter:
    """Appends masked lines to the deployment's stream and, in batches, to the database.

    Safe to call from several threads. If Redis fails, lines still reach the
    database under a synthetic id that sorts after everything written before; live
    viewers miss them, the history and the download keep them.
    """

    def __init__(
        self,
        deployment_id: int,
        *,
        secrets: Iterable[str] = (),
        flush_interval: float = 0.2,
        batch_size: int = 200,
        redis: redis_lib.Redis | None = None,
    ) -> None:
        self.deployment_id = deployment_id
        self.key = stream_key(deployment_id)
        self.mask = Masker(secrets)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._redis = redis if redis is not None else get_redis()
        self._maxlen = settings.LOG_STREAM_MAXLEN
        # Held across XADD and the append so database order equals stream order.
        self._lock = threading.Lock()
        # Held across a whole flush so `flush()` returns only once every earlier line is stored.
        self._flush_lock = threading.Lock()
        self._buffer: list[LogLine] = []
        self._last_id = (0, 0)
        self._last_flush = time.monotonic()
        self._redis_down_until = 0.0
        self._stream_has_ttl = False
        self._closed = False
        self._stop = threading.Event()
        self._timer = threading.Thread(
            target=self._flush_periodically, name=f"log-flush-{deployment_id}", daemon=True
        )
        self._timer.start()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, text: str) -> None:
        # Lets a writer be passed where the pipeline expects a LogFn.
        self.line(text)

    def line(self, text: str, *, stage: str = "") -> None:
        # Mask before splitting, so a multi-line secret is caught whole.
        masked = self.mask(text)
        parts = [part.rstrip("\r") for part in masked.rstrip("\n").split("\n")]
        with self._lock:
            for part in parts:
                entry_ms, entry_seq = self._append({"type": "line", "stage": stage, "text": part})
                self._buffer.append(
                    LogLine(
                        deployment_id=self.deployment_id,
                        entry_ms=entry_ms,
                        entry_seq=entry_seq,
                        stage=stage[:20],
                        text=part,
                    )
                )
            # After close() no timer runs: a straggler (say a log-streaming thread) is stored at once.
            due = self._closed or len(self._buffer) >= self.batch_size or self._flush_due()
        if due:
            self._try_flush()

    def event(self, kind: str, **data: str) -> None:
        with self._lock:
            self._append({"type": kind, **data}, required=False)

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._last_flush = time.monotonic()
            if not batch:
                return
            try:
                LogLine.objects.bulk_create(batch, ignore_conflicts=True)
            except Exception:
                # Keep the lines for the next attempt; ignore_conflicts makes a retry harmless.
                with self._lock:
                    self._buffer[:0] = batch
                raise

    def _try_flush(self) -> None:
        try:
            self.flush()
        except Exception:
            logger.exception("Storing log lines of %s failed; retrying with the next batch", self.key)
            close_old_connections()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._timer is not threading.current_thread():
            self._timer.join()
        self.flush()
        if time.monotonic() < self._redis_down_until:
            logger.warning("Log stream %s keeps no expiry: Redis is unavailable", self.key)
            return
        try:
            self._redis.expire(self.key, settings.LOG_STREAM_TTL)
        except redis_lib.RedisError as exc:
            logger.warning("Log stream %s keeps no expiry: %s", self.key, exc)

    def _set_run_ttl(self) -> None:
        # A stream left by a crashed worker must still expire, and one that an earlier
        # phase's close() gave a short TTL (before approval) must not expire mid-run.
        try:
            self._redis.expire(self.key, settings.DEPLOYMENT_TIME_LIMIT + settings.LOG_STREAM_TTL)
            self._stream_has_ttl = True
        except redis_lib.RedisError:
            pass  # the next XADD notices an outage and logs it

    def _flush_due(self) -> bool:
        return bool(self._buffer) and time.monotonic() - self._last_flush >= self.flush_interval

    def _append(self, fields: dict[str, Any], *, required: bool = True) -> tuple[int, int]:
        """XADDs one entry and returns its id; falls back to a synthetic id if Redis fails."""
        if time.monotonic() >= self._redis_down_until:
            try:
                entry_id = self._redis.xadd(self.key, fields, maxlen=self._maxlen, approximate=True)
            except redis_lib.RedisError as exc:
                self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
                self._stream_has_ttl = False  # a restarted Redis may have lost the stream
                logger.warning(
                    "Redis unavailable for %s, writing log lines to the database only: %s", self.key, exc
                )
            else:
                if not self._stream_has_ttl:
                    self._set_run_ttl()
                ms, _, seq = str(entry_id).partition("-")
                self._last_id = (int(ms), int(seq))
                return self._last_id
        if not required:
            return self._last_id
        now_ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self._last_id
        self._last_id = (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)
        return self._last_id

    def _flush_periodically(self) -> None:
        try:
            while not self._stop.wait(self.flush_interval):
                with self._lock:
                    due = self._flush_due()
                if due:
                    self._try_flush()
        finally:
            connection.close()


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
    ms, seq = entry
    return Q(entry_ms__gt=ms) | Q(entry_ms=ms, entry_seq__gt=seq)


def _before(entry: tuple[int, int]) -> Q:
    ms, seq = entry
    return Q(entry_ms__lt=ms) | Q(entry_ms=ms, entry_seq__lt=seq)


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
    deployment_id = deployment.pk if isinstance(deployment, Deployment) else deployment
    lines = LogLine.objects.filter(deployment_id=deployment_id)
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
