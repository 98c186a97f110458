"""LogWriter under load and bad input: masking across lines and batches, nothing lost,
bounded buffering, the size limit, bytes every store accepts, and failures that
surface. Real Redis, real database; slowness comes from a real slow consumer."""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import quote_plus

import pytest

from deployments.logs import LogWriter, LogWriterError, Masker, get_redis, history, stream_key
from deployments.models import LogLine
from tests.conftest import log_deployment

SECRET = "Zq7-s3cr3t/p@ss+wörd&more=="
B64 = base64.b64encode(SECRET.encode()).decode()
URL = quote_plus(SECRET)


@pytest.fixture
def deployment(transactional_db):
    yield from log_deployment("flood")


def stored(deployment):
    return list(
        LogLine.objects.filter(deployment=deployment)
        .order_by("entry_ms", "entry_seq")
        .values_list("entry_ms", "entry_seq", "stage", "text")
    )


def streamed(deployment):
    entries = get_redis().xrange(stream_key(deployment.pk))
    return [(entry_id, fields) for entry_id, fields in entries if fields["type"] == "line"]


def assert_no_secret(texts):
    for text in texts:
        assert "s3cr3t" not in text and "3cr3t/p" not in text, text
        assert B64[:12] not in text and URL[:12] not in text, text


# --- masking --------------------------------------------------------------------------


def test_a_secret_printed_across_two_lines_is_masked_in_both():
    masker = Masker([SECRET])
    before, after = f"token: {SECRET[:9]}", f"{SECRET[9:]} (end)"

    cut, upto = masker.across(before, after)

    assert (before[cut:], after[:upto]) == (SECRET[:9], SECRET[9:])


def test_a_secret_between_terminal_colour_codes_is_masked():
    coloured = f"pass=\x1b[1;31m{SECRET[:5]}\x1b[0m{SECRET[5:]}\x1b[0m done"

    masked = Masker([SECRET])(coloured)

    assert "3cr3t" not in masked and masked.startswith("pass=") and masked.endswith(" done")


@pytest.mark.timeout(120)
def test_a_flood_with_secrets_at_batch_edges_and_split_over_lines_stores_and_streams_none(
    deployment, settings
):
    settings.LOG_STREAM_MAXLEN = 300_000
    lines = 200_000
    expected = 0
    # Small stream and database batches put secrets on every kind of edge.
    with LogWriter(
        deployment.pk, secrets=[SECRET], stream_batch=97, batch_size=1009, max_lines=lines * 2
    ) as writer:
        for i in range(lines):
            kind = i % 100
            if kind == 0:
                writer.line(f"{i} login {SECRET}", stage="build")
            elif kind == 1:
                writer.line(f"{i} auth Basic {B64}", stage="build")
            elif kind == 2:
                writer.line(f"{i} url ?p={URL}&x=1", stage="build")
            elif kind == 3:
                writer.line(f"{i} wrapped {SECRET[:10]}", stage="build")
            elif kind == 4:
                writer.line(f"{SECRET[10:]} {i} continued", stage="build")
            elif kind == 5:
                writer.line(f"{i} two\nlines {SECRET}\nthree", stage="build")
                expected += 2
            else:
                writer.line(f"{i} plain output", stage="build")
            expected += 1

    rows = stored(deployment)
    entries = streamed(deployment)
    assert len(rows) == len(entries) == expected
    assert [f"{ms}-{seq}" for ms, seq, _, _ in rows] == [entry_id for entry_id, _ in entries]
    assert [text for *_, text in rows] == [fields["text"] for _, fields in entries]
    assert_no_secret(text for *_, text in rows)
    assert sum("****" in text for *_, text in rows) == 6 * lines // 100


@pytest.mark.timeout(120)
def test_nothing_is_lost_or_reordered_under_a_flood_from_several_threads(deployment, settings):
    settings.LOG_STREAM_MAXLEN = 200_000
    for attempt in range(3):
        LogLine.objects.filter(deployment=deployment).delete()
        get_redis().delete(stream_key(deployment.pk))
        started = time.monotonic()
        with LogWriter(deployment.pk, stream_batch=500, batch_size=2000) as writer:

            def flood(thread_no: int) -> None:
                for i in range(10_000):
                    writer.line(f"t{thread_no} {i}", stage="test")

            threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            writer.event("stage", name="test", status="running")
            for thread in threads:
                thread.join()
        assert time.monotonic() - started < 60

        rows = stored(deployment)
        entries = streamed(deployment)
        assert len(rows) == len(entries) == 40_000, attempt
        assert [f"{ms}-{seq}" for ms, seq, *_ in rows] == [entry_id for entry_id, _ in entries]
        for n in range(4):
            mine = [text for *_, text in rows if text.startswith(f"t{n} ")]
            assert mine == [f"t{n} {i}" for i in range(10_000)]


@pytest.mark.timeout(60)
def test_flush_returns_with_every_line_in_redis_and_the_database(deployment):
    with LogWriter(deployment.pk, flush_interval=60, batch_size=10**6) as writer:
        for i in range(5000):
            writer.line(f"line {i}")
        writer.flush()

        assert len(stored(deployment)) == len(streamed(deployment)) == 5000


# --- back-pressure -----------------------------------------------------------------------


class SlowRedis:
    """The real client, with every command answered `delay` seconds late: a slow server."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.client = get_redis()

    def evalsha(self, *args):
        time.sleep(self.delay)
        return self.client.evalsha(*args)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.timeout(60)
def test_a_slow_store_makes_line_wait_and_the_buffer_never_passes_its_limit(deployment):
    writer = LogWriter(
        deployment.pk,
        redis=SlowRedis(0.01),
        buffer_lines=200,
        stream_batch=50,
        batch_size=50,
        flush_interval=0.01,
    )
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, writer._pending_lines)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        for i in range(2000):
            writer.line(f"line {i}")
    finally:
        stop.set()
        watcher.join()
        writer.close()

    # 40 round trips of 10 ms at least: line() waited for the store instead of buffering.
    assert time.monotonic() - started > 0.3
    assert peak <= 200
    assert len(stored(deployment)) == 2000


@pytest.mark.timeout(60)
def test_a_secret_split_over_two_lines_stays_masked_while_line_waits_for_space(deployment):
    # The first half is the last line before the buffer is full: the next line() waits
    # for the slow store far longer than the hold-back, with the second half in hand.
    writer = LogWriter(
        deployment.pk, secrets=[SECRET], redis=SlowRedis(0.2), buffer_lines=100, stream_batch=50
    )
    with writer:
        for i in range(99):
            writer.line(f"line {i}")
        writer.line(f"wrapped {SECRET[:10]}")
        started = time.monotonic()
        writer.line(f"{SECRET[10:]} continued")
        assert time.monotonic() - started > 0.1  # it did wait
    texts = [text for *_, text in stored(deployment)]
    assert texts[99:] == ["wrapped ****", "**** continued"]
    assert_no_secret(texts)


@pytest.mark.timeout(60)
def test_a_stalled_store_makes_line_fail_loudly_after_the_bounded_wait(deployment):
    writer = LogWriter(deployment.pk, redis=SlowRedis(3), buffer_lines=100, stream_batch=100, buffer_wait=1)
    try:
        with pytest.raises(LogWriterError, match="not stored after 1 s"):
            for i in range(1000):
                writer.line(f"line {i}")
    finally:
        writer._redis.delay = 0
        writer.buffer_wait = 30  # let close() wait out the slow reply in flight
        writer.close()


# --- failures surface ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_batch_the_database_refuses_is_raised_by_the_next_call(transactional_db):
    # No such deployment: the foreign key fails, in the database thread.
    writer = LogWriter(987_654_321)
    try:
        writer.line("orphan line")
        with pytest.raises(LogWriterError, match="could not be stored"):
            writer.flush()
        writer.flush()  # raised once: the writer goes on
    finally:
        writer.close()
        get_redis().delete(stream_key(987_654_321))


# --- the size limit ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_past_the_line_limit_one_truncation_line_is_stored_and_events_still_pass(deployment):
    with LogWriter(deployment.pk, max_lines=100) as writer:
        for i in range(250):
            writer.line(f"line {i}", stage="build")
        writer.event("stage", name="build", status="succeeded")

    texts = [text for *_, text in stored(deployment)]
    assert texts[:100] == [f"line {i}" for i in range(100)]
    assert texts[100:] == ["… truncated at 100 lines: limit SHIPMATE_LOG_MAX_LINES"]
    assert writer.dropped == 150 and writer.lines_written == 250
    events = [f for _, f in get_redis().xrange(stream_key(deployment.pk)) if f["type"] == "stage"]
    assert events == [{"type": "stage", "name": "build", "status": "succeeded"}]


# --- bytes every store accepts ----------------------------------------------------------------


def write_bad_input(deployment):
    with LogWriter(deployment.pk, max_line_bytes=65_536) as writer:
        writer.line("nul\x00byte")
        writer.line(b"bad \xff\xfe utf-8")
        writer.line("lone \udcff surrogate")
        writer.line("bell\x07 esc\x1b[31m red\x1b[0m tab\t")
        writer.line("x" * 5_000_000)
        writer.line("<script>alert(1)</script>")


def check_bad_input(deployment):
    texts = [text for *_, text in stored(deployment)]
    assert texts[0] == "nul\ufffdbyte"
    assert texts[1] == "bad \ufffd\ufffd utf-8"
    assert texts[2] == "lone \ufffd surrogate"
    assert texts[3] == "bell\x07 esc\x1b[31m red\x1b[0m tab\t"
    assert len(texts[4].encode()) <= 65_536 and texts[4].startswith("xxxx")
    assert "bytes cut: limit SHIPMATE_LOG_MAX_LINE_BYTES" in texts[4]
    assert texts[5] == "<script>alert(1)</script>"
    assert [line.text for line in history(deployment)] == texts
    assert [f["text"] for _, f in streamed(deployment)] == texts


@pytest.mark.timeout(60)
def test_nul_invalid_utf8_huge_lines_and_markup_are_stored_safely(deployment):
    write_bad_input(deployment)
    check_bad_input(deployment)


def test_stored_lines_are_numbered_across_writers_so_pages_need_no_count(deployment):
    with LogWriter(deployment.pk) as build:
        for i in range(1, 1201):
            build.line(f"build {i}")
    with LogWriter(deployment.pk) as release:  # the release phase, perhaps on another worker
        release.line("rollout 1")
        release.event("stage", name="rollout", status="running")
        release.line("rollout 2")

    numbers = [number for *_, number in LogLine.objects.filter(deployment=deployment).order_by(
        "entry_ms", "entry_seq").values_list("text", "number")]  # fmt: skip
    assert numbers == list(range(1, 1203))
