"""LogWriter: masks lines and stores them in Redis and the database from background threads."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import redis as redis_lib
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from ..models import LogLine
from .bus import REDIS_RETRY_AFTER, get_redis, stream_key
from .masking import MASK, Masker, cap_line, clean_text

logger = logging.getLogger(__name__)

# --- writer --------------------------------------------------------------------

# One EVALSHA XADDs a whole batch, one entry per line in order, with the ids Redis
# assigns, and returns them as one string: several times the rate of a redis-py
# pipeline of XADDs, whose per-argument packing and per-reply parsing dominate
# (docs/decisions.md). ARGV: maxlen, then "L" and a run of lines as one argument,
# `stage NUL text NUL` each (stored text never holds NUL), or an event: n and its n
# field/value pairs.
_XADD_BATCH = r"""
local key, maxlen, ids, n, i = KEYS[1], ARGV[1], {}, 0, 2
while i <= #ARGV do
  if ARGV[i] == 'L' then
    local blob, pos = ARGV[i + 1], 1
    while pos <= #blob do
      local a = string.find(blob, '\0', pos, true)
      local b = string.find(blob, '\0', a + 1, true)
      n = n + 1
      ids[n] = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'type', 'line',
                          'stage', string.sub(blob, pos, a - 1), 'text', string.sub(blob, a + 1, b - 1))
      pos = b + 1
    end
    i = i + 2
  else
    local count = tonumber(ARGV[i])
    n = n + 1
    ids[n] = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 1, i + 2 * count))
    i = i + 1 + 2 * count
  end
end
return table.concat(ids, ',')
"""
_XADD_BATCH_SHA = hashlib.sha1(_XADD_BATCH.encode()).hexdigest()
# A line waits this long for the next one (or flush()/close()) before it goes out, so a
# secret the next line completes is masked in both.
HOLD_BACK = 0.05
# Pauses before retrying a batch the database refused for a connection problem.
DB_RETRIES = (0.2, 1.0)
_COLUMNS = ("deployment_id", "entry_ms", "entry_seq", "stage", "text", "number")

Row = tuple[int, int | str, int | str, str, str, int]
Item = tuple[str, str] | dict[str, str]  # a line (stage, text) or an event's fields


class LogWriterError(RuntimeError):
    """The log could not be written as asked (the database refused a batch, or the
    writer stalled); raised by the writer's next call."""


def _insert_rows(rows: list[Row]) -> None:
    table = connection.ops.quote_name(LogLine._meta.db_table)
    columns = ", ".join(_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            import psycopg

            try:
                with transaction.atomic():  # a savepoint: a conflict falls back to the INSERT
                    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                return
            except psycopg.errors.UniqueViolation:
                pass  # a retried batch: store what is missing
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows
        )


class LogWriter:
    """Masks lines and hands them to two background threads: one XADDs them to the
    deployment's stream in batches (`stream_batch` entries, or whatever came within
    `stream_interval`), the other inserts them into `LogLine` (`batch_size` rows, or
    every `flush_interval`), with the id Redis gave each entry.

    `line()` waits (at most `buffer_wait` seconds, then raises) while `buffer_lines`
    lines or `buffer_bytes` bytes are not yet in the database. `flush()` and
    `close()` return once everything written before is in Redis and the database.
    A failure in a background thread is raised, once, by the next `line()`,
    `event()`, `flush()` or `close()` as LogWriterError. Past `max_lines` lines one
    truncation line is stored, later lines are only counted (`dropped`); events pass.

    Safe to call from several threads. If Redis fails, lines still reach the database
    under a synthetic id that sorts after everything written before; live viewers
    miss them, the history and the download keep them.
    """

    def __init__(
        self,
        deployment_id: int,
        *,
        secrets: Iterable[str] = (),
        flush_interval: float = 0.2,
        batch_size: int = 5000,
        redis: redis_lib.Redis | None = None,
        stream_interval: float = 0.002,
        stream_batch: int = 1000,
        max_lines: int | None = None,
        max_line_bytes: int | None = None,
        buffer_lines: int | None = None,
        buffer_bytes: int | None = None,
        buffer_wait: float | None = None,
    ) -> None:
        self.deployment_id = deployment_id
        self.key = stream_key(deployment_id)
        self.mask = Masker(secrets)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.stream_interval = stream_interval
        self.stream_batch = stream_batch
        self.max_lines = max_lines or settings.LOG_MAX_LINES
        self.max_line_bytes = max_line_bytes or settings.LOG_MAX_LINE_BYTES
        self.buffer_lines = buffer_lines or settings.LOG_BUFFER_LINES
        self.buffer_bytes = buffer_bytes or settings.LOG_BUFFER_BYTES
        self.buffer_wait = buffer_wait or settings.LOG_BUFFER_WAIT
        self._redis = redis if redis is not None else get_redis()
        self._maxlen = settings.LOG_STREAM_MAXLEN
        # One lock; each thread waits on its own condition of it.
        self._lock = threading.Lock()
        self._wake_stream = threading.Condition(self._lock)
        self._wake_db = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._input: list[Item] = []  # masked, waiting for the stream thread
        self._input_since = 0.0
        self._chunks: list[tuple[list[Row], int, int, int]] = []  # (rows, items up to, lines, bytes)
        self._chunk_rows = 0
        self._chunks_since = 0.0
        self._held: tuple[str, str] | None = None  # the last line, kept back for the masker
        self._held_at = 0.0
        # The caller waits for space with its next line in hand: the held line is not
        # "the last one" then, and must wait for it instead of going out by time.
        self._caller_waiting = False
        self._accepted = 0  # items put into _input
        self._taken = 0  # items the stream thread took
        self._stored = 0  # items done: in Redis and the database
        self._flush_to = 0  # flush() wants the items up to here done now
        self._pending_lines = 0  # accepted lines not yet in the database
        self._pending_bytes = 0
        self._lines = 0
        self.dropped = 0  # lines past max_lines, counted only
        self._error: BaseException | None = None
        self._error_note = ""
        self._closed = False
        self._stream_done = False
        self._sync = threading.Lock()  # after close(), stragglers are written one call at a time
        self._joined = threading.Event()
        # Only the stream thread (or, after close, the straggler path) touches these.
        self._last_id = (0, 0)
        # Each stored line's 1-based place in the whole log, continued from an earlier
        # phase's writer: pages and search show line numbers without counting rows.
        self._number = (
            LogLine.objects.filter(deployment_id=deployment_id)
            .order_by("-entry_ms", "-entry_seq")
            .values_list("number", flat=True)
            .first()
            or 0
        )
        self._redis_down_until = 0.0
        self._stream_has_ttl = False
        self._threads = [
            threading.Thread(target=self._stream_loop, name=f"log-stream-{deployment_id}", daemon=True),
            threading.Thread(target=self._db_loop, name=f"log-db-{deployment_id}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __call__(self, text: str) -> None:
        # Lets a writer be passed where the pipeline expects a LogFn.
        self.line(text)

    @property
    def lines_written(self) -> int:
        """Lines given to the writer, stored or (past the limit) not."""
        return self._lines + self.dropped

    # --- the caller's side

    def line(self, text: str | bytes, *, stage: str = "") -> None:
        if self._error is not None:
            self._raise_failure()
        if type(text) is not str or not text.isascii() or "\x00" in text:
            text = clean_text(text)
        if "\x00" in stage:
            stage = stage.replace("\x00", "")
        # Mask before splitting, so a multi-line secret is caught whole.
        if self.mask.active:
            text = self.mask(text)
        if "\n" in text:
            parts = [part.rstrip("\r") for part in text.rstrip("\n").split("\n")]
        else:
            parts = [text.rstrip("\r")]
        done = 0
        with self._lock:
            while done < len(parts) and not self._closed:
                if self._pending_lines >= self.buffer_lines or self._pending_bytes >= self.buffer_bytes:
                    self._wait_for_space()
                    if self._closed:
                        break
                self._accept(stage, parts[done])
                done += 1
            if done == len(parts):
                return
        self._write_now([(stage, part) for part in parts[done:]])

    def event(self, kind: str, **data: str) -> None:
        if self._error is not None:
            self._raise_failure()
        fields = {"type": kind, **data}
        with self._lock:
            if not self._closed:
                self._release_held()  # a stage's end comes after its last line
                self._enqueue(fields)
                return
        self._write_now([fields])

    def flush(self) -> None:
        self._raise_failure()
        with self._lock:
            if self._closed:
                return
            self._release_held()
            target = self._accepted
            self._flush_to = max(self._flush_to, target)
            self._wake_stream.notify()
            self._wake_db.notify()
            deadline = time.monotonic() + self.buffer_wait
            while self._stored < target and self._error is None and not self._stream_done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LogWriterError(
                        f"Log of deployment {self.deployment_id}: not stored after {self.buffer_wait:g} s"
                    )
                self._progress.wait(remaining)
        self._raise_failure()

    def close(self) -> None:
        with self._lock:
            closing = not self._closed
            if closing:
                self._release_held()
                self._closed = True
                self._wake_stream.notify()
                self._wake_db.notify()
                self._progress.notify_all()
        if not closing:
            self._raise_failure()
            return
        stalled = False
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=self.buffer_wait)
                stalled |= thread.is_alive()
        self._joined.set()
        if self.dropped:
            logger.warning(
                "Log of deployment %s: %s lines past SHIPMATE_LOG_MAX_LINES=%s were not stored",
                self.deployment_id,
                self.dropped,
                self.max_lines,
            )
        self._expire()
        if stalled:
            raise LogWriterError(
                f"Log of deployment {self.deployment_id}: not stored after {self.buffer_wait:g} s"
            )
        self._raise_failure()

    # --- shared state, all with self._lock held

    def _wait_for_space(self) -> None:
        deadline = 0.0
        while not self._closed and (
            self._pending_lines >= self.buffer_lines
            or (self._pending_bytes >= self.buffer_bytes and self._pending_lines)
        ):
            now = time.monotonic()
            deadline = deadline or now + self.buffer_wait
            if now >= deadline or self._stream_done:
                raise LogWriterError(
                    f"Log of deployment {self.deployment_id}: {self._pending_lines} lines not stored "
                    f"after {self.buffer_wait:g} s; the database or Redis is stalled"
                )
            self._caller_waiting = True
            try:
                self._progress.wait(deadline - now)
            finally:
                self._caller_waiting = False

    def _count(self, stage: str, text: str) -> tuple[str, str] | None:
        """The line to store for `text`, under the size limit; None past it."""
        if self._lines < self.max_lines:
            self._lines += 1
            return stage, text
        self.dropped += 1
        if self.dropped > 1:
            return None
        return stage, f"… truncated at {self.max_lines:,} lines: limit SHIPMATE_LOG_MAX_LINES"

    def _accept(self, stage: str, text: str) -> None:
        if self._lines >= self.max_lines:
            line = self._count(stage, text)
            if line is None:
                return
            self._pending_lines += 1
            self._release_held()
            self._enqueue(line)
            return
        self._lines += 1
        self._pending_lines += 1
        if self._held is None and not self.mask.active:
            self._enqueue((stage, text))
            return
        if self._held is not None:
            held_stage, held_text = self._held
            split = self.mask.across(held_text, text)
            if split is not None:
                held_text, text = held_text[: split[0]] + MASK, MASK + text[split[1] :]
            self._enqueue((held_stage, held_text))
        self._held = (stage, text)
        self._held_at = time.monotonic()

    def _release_held(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._enqueue(held)

    def _enqueue(self, item: Item) -> None:
        if type(item) is tuple:
            if len(item[1]) * 4 > self.max_line_bytes:
                item = (item[0], cap_line(item[1], self.max_line_bytes))
            self._pending_bytes += len(item[1])
        if not self._input:
            self._input_since = time.monotonic()
            self._wake_stream.notify()
        self._input.append(item)
        self._accepted += 1
        if len(self._input) == self.stream_batch:
            self._wake_stream.notify()

    def _fail(self, exc: BaseException, note: str) -> None:
        logger.error("Log of deployment %s: %s", self.deployment_id, note, exc_info=exc)
        with self._lock:
            if self._error is None:
                self._error, self._error_note = exc, note
            self._progress.notify_all()

    def _raise_failure(self) -> None:
        with self._lock:
            exc, note = self._error, self._error_note
            self._error = None
        if exc is not None:
            raise LogWriterError(f"Log of deployment {self.deployment_id}: {note}: {exc}") from exc

    # --- the stream thread

    def _next_batch(self) -> list[Item] | None:
        while True:
            now = time.monotonic()
            holding = self._held is not None and not self._caller_waiting
            if holding and now - self._held_at >= HOLD_BACK:
                self._release_held()
                holding = False
            timeout: float | None = None
            if self._input:
                due = self._input_since + self.stream_interval
                if (
                    now >= due
                    or len(self._input) >= self.stream_batch
                    or self._flush_to > self._taken
                    or self._closed
                ):
                    batch = self._input[: self.stream_batch]
                    del self._input[: self.stream_batch]
                    self._taken += len(batch)
                    self._input_since = now
                    return batch
                timeout = due - now
            elif self._closed:
                return None
            if holding:
                hold = self._held_at + HOLD_BACK - now
                timeout = hold if timeout is None else min(timeout, hold)
            self._wake_stream.wait(timeout)

    def _stream_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    batch = self._next_batch()
                if batch is None:
                    return
                try:
                    rows = self._send(batch)
                except Exception as exc:  # a bug, not Redis: keep the lines, say so
                    self._fail(exc, "sending log lines to Redis failed")
                    rows = self._synthetic_rows(batch)
                size = sum(len(item[1]) for item in batch if isinstance(item, tuple))
                lines = sum(1 for item in batch if isinstance(item, tuple))
                with self._lock:
                    if not self._chunks:
                        self._chunks_since = time.monotonic()
                    self._chunks.append((rows, self._taken, lines, size))
                    self._chunk_rows += len(rows)
                    self._wake_db.notify()
        except BaseException as exc:
            self._fail(exc, "the log stream thread stopped")
            raise
        finally:
            with self._lock:
                self._stream_done = True
                self._wake_db.notify()
                self._progress.notify_all()

    def _send(self, batch: list[Item]) -> list[Row]:
        """XADDs the batch and returns its lines as database rows, with their entry ids."""
        if time.monotonic() < self._redis_down_until:
            return self._synthetic_rows(batch)
        args: list[Any] = [self._maxlen]
        run: list[str] = []
        for item in batch:
            if type(item) is tuple:
                run += item
                continue
            if run:
                args += ("L", "\0".join(run) + "\0")
                run = []
            args.append(len(item))
            for pair in item.items():  # type: ignore[union-attr]
                args += pair
        if run:
            args += ("L", "\0".join(run) + "\0")
        try:
            reply = self._xadd_batch(args)
        except redis_lib.RedisError as exc:
            self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER
            self._stream_has_ttl = False  # a restarted Redis may have lost the stream
            logger.warning(
                "Redis unavailable for %s, writing log lines to the database only: %s", self.key, exc
            )
            return self._synthetic_rows(batch)
        if not self._stream_has_ttl:
            self._set_run_ttl()
        if isinstance(reply, bytes):
            reply = reply.decode()
        # "ms-seq,ms-seq,…" → ms and seq as decimal strings: both stores take them as is.
        parts = reply.replace("-", ",").split(",")
        ms, seq = parts[0::2], parts[1::2]
        if len(ms) != len(batch):
            raise RuntimeError(f"Redis returned {len(ms)} ids for {len(batch)} entries")
        self._last_id = (int(ms[-1]), int(seq[-1]))
        pk = self.deployment_id
        rows = [
            (pk, m, q, item[0][:20], item[1], 0)  # type: ignore[misc]
            for item, m, q in zip(batch, ms, seq, strict=True)
            if type(item) is tuple
        ]
        return self._numbered(rows)

    def _numbered(self, rows: list[Row]) -> list[Row]:
        first = self._number + 1
        self._number += len(rows)
        return [(*row[:5], n) for row, n in zip(rows, range(first, first + len(rows)), strict=True)]  # type: ignore[misc]

    def _xadd_batch(self, args: list[Any]) -> list[Any]:
        try:
            return self._redis.evalsha(_XADD_BATCH_SHA, 1, self.key, *args)
        except redis_lib.exceptions.NoScriptError:
            self._redis.script_load(_XADD_BATCH)
            return self._redis.evalsha(_XADD_BATCH_SHA, 1, self.key, *args)

    def _synthetic_rows(self, batch: list[Item]) -> list[Row]:
        rows: list[Row] = []
        for item in batch:
            if isinstance(item, tuple):
                now_ms = time.time_ns() // 1_000_000
                last_ms, last_seq = self._last_id
                self._last_id = (now_ms, 0) if now_ms > last_ms else (last_ms, last_seq + 1)
                rows.append((self.deployment_id, *self._last_id, item[0][:20], item[1], 0))
        return self._numbered(rows)

    def _set_run_ttl(self) -> None:
        # A stream left by a crashed worker must still expire, and one that an earlier
        # phase's close() gave a short TTL (before approval) must not expire mid-run.
        try:
            self._redis.expire(self.key, settings.DEPLOYMENT_TIME_LIMIT + settings.LOG_STREAM_TTL)
            self._stream_has_ttl = True
        except redis_lib.RedisError:
            pass  # the next XADD notices an outage and logs it

    def _expire(self) -> None:
        if time.monotonic() < self._redis_down_until:
            logger.warning("Log stream %s keeps no expiry: Redis is unavailable", self.key)
            return
        try:
            self._redis.expire(self.key, settings.LOG_STREAM_TTL)
        except redis_lib.RedisError as exc:
            logger.warning("Log stream %s keeps no expiry: %s", self.key, exc)

    # --- the database thread

    def _next_rows(self) -> tuple[list[Row], int, int, int] | None:
        while True:
            timeout: float | None = None
            if self._chunks:
                now = time.monotonic()
                due = self._chunks_since + self.flush_interval
                if (
                    now >= due
                    or self._chunk_rows >= self.batch_size
                    or self._flush_to > self._stored
                    or self._stream_done
                ):
                    chunks, self._chunks, self._chunk_rows = self._chunks, [], 0
                    rows = [row for chunk in chunks for row in chunk[0]]
                    return rows, chunks[-1][1], sum(c[2] for c in chunks), sum(c[3] for c in chunks)
                timeout = due - now
            elif self._stream_done:
                return None
            self._wake_db.wait(timeout)

    def _db_loop(self) -> None:
        try:
            while True:
                with self._lock:
                    work = self._next_rows()
                if work is None:
                    return
                rows, upto, lines, size = work
                if rows:
                    try:
                        self._store(rows)
                    except Exception as exc:
                        self._fail(exc, f"{len(rows)} log lines could not be stored")
                        connection.close()
                with self._lock:
                    self._stored = upto
                    self._pending_lines -= lines
                    self._pending_bytes -= size
                    self._progress.notify_all()
        except BaseException as exc:
            self._fail(exc, "the log database thread stopped")
            raise
        finally:
            connection.close()

    def _store(self, rows: list[Row]) -> None:
        for pause in (*DB_RETRIES, None):
            try:
                _insert_rows(rows)
                return
            except (OperationalError, InterfaceError) as exc:
                if pause is None:
                    raise
                logger.warning("Storing log lines of %s failed, retrying: %s", self.key, exc)
                connection.close()
                time.sleep(pause)

    # --- after close()

    def _write_now(self, items: list[Item]) -> None:
        """A straggler (say a log-streaming thread still running): written at once."""
        self._joined.wait(self.buffer_wait)
        with self._sync:
            batch: list[Item] = []
            for item in items:
                if isinstance(item, tuple):
                    with self._lock:
                        line = self._count(*item)
                    if line is not None:
                        batch.append((line[0], cap_line(line[1], self.max_line_bytes)))
                else:
                    batch.append(item)
            rows = self._send(batch)
            if rows:
                try:
                    self._store(rows)
                except Exception as exc:
                    raise LogWriterError(
                        f"Log of deployment {self.deployment_id}: {len(rows)} log lines could not be stored: {exc}"
                    ) from exc
