import base64
import json
import logging
import threading
import time
from urllib.parse import quote, quote_plus

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deployments.logs import (
    LogWriter,
    Masker,
    get_redis,
    history,
    mask,
    parse_event_id,
    publish_event,
    stream_key,
)
from deployments.models import LogLine
from tests.conftest import log_deployment

SECRET = "s3cr3t/p@ss+wörd&more=="


@pytest.fixture
def deployment(db):
    yield from log_deployment("logs")


def stream_lines(deployment):
    return [
        (entry_id, f) for entry_id, f in get_redis().xrange(stream_key(deployment.pk)) if f["type"] == "line"
    ]


def eventually(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def db_ids(deployment):
    return [
        line.event_id
        for line in LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq")
    ]


# --- masking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
    ],
)
def test_every_encoded_form_of_a_secret_is_masked(form):
    masked = mask(f"token={form}; next", [SECRET])

    assert masked == "token=****; next"


def test_secrets_shorter_than_four_characters_are_not_masked():
    assert mask("abc is a common word, abcd is not", ["abc", "abcd"]) == "abc is a common word, **** is not"


def test_a_secret_containing_another_is_masked_whole():
    assert mask("key=hunter2hunter2!", ["hunter2", "hunter2hunter2!"]) == "key=****"


def test_masker_without_secrets_returns_text_unchanged():
    assert Masker([])("nothing to hide") == "nothing to hide"


def test_each_line_of_a_multiline_secret_is_masked_when_printed_alone():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----"

    assert "MIIEvQIBADANBgkqhkiG9w0B" not in mask("  MIIEvQIBADANBgkqhkiG9w0B", [key])


@pytest.mark.parametrize("value, expected", [("1712-3", (1712, 3)), (" 5-0 ", (5, 0))])
def test_event_ids_are_parsed(value, expected):
    assert parse_event_id(value) == expected


@pytest.mark.parametrize(
    "value", [None, "", "abc", "1-", "-1", "1-2-3", "1.5-2", "12-99999999999", "9" * 30 + "-1"]
)
def test_garbage_event_ids_parse_to_none(value):
    assert parse_event_id(value) is None


# --- LogWriter ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_no_secret_text_reaches_redis_or_the_database(deployment):
    encoded = base64.b64encode(SECRET.encode()).decode()
    with LogWriter(deployment.pk, secrets=[SECRET]) as writer:
        writer.line(
            f"login with {SECRET}\nheader: Basic {encoded}\nurl ?p={quote_plus(SECRET)}", stage="build"
        )

    stored = [line.text for line in LogLine.objects.filter(deployment=deployment)]
    streamed = [fields["text"] for _, fields in stream_lines(deployment)]
    assert stored == streamed == ["login with ****", "header: Basic ****", "url ?p=****"]
    dump = json.dumps(get_redis().xrange(stream_key(deployment.pk)))
    assert "s3cr3t" not in dump and encoded not in dump


@pytest.mark.django_db(transaction=True)
def test_lines_get_the_same_ids_in_the_stream_and_the_database(deployment):
    with LogWriter(deployment.pk) as writer:
        for i in range(5):
            writer.line(f"line {i}", stage="test")

    entries = stream_lines(deployment)
    assert [entry_id for entry_id, _ in entries] == db_ids(deployment)
    assert [f["text"] for _, f in entries] == [f"line {i}" for i in range(5)]
    assert {f["stage"] for _, f in entries} == {"test"}
    assert {line.stage for line in LogLine.objects.filter(deployment=deployment)} == {"test"}


@pytest.mark.django_db(transaction=True)
def test_database_rows_lag_until_the_batch_is_flushed(deployment):
    writer = LogWriter(deployment.pk, flush_interval=60, batch_size=10)
    try:
        for i in range(9):
            writer.line(f"line {i}")
        # The stream gets lines within milliseconds, the database only by the batch.
        assert eventually(lambda: len(stream_lines(deployment)) == 9)
        assert LogLine.objects.filter(deployment=deployment).count() == 0

        writer.line("line 9")  # the tenth line fills the batch
        assert eventually(lambda: LogLine.objects.filter(deployment=deployment).count() == 10)

        writer.line("line 10")
        time.sleep(0.1)
        assert LogLine.objects.filter(deployment=deployment).count() == 10
        writer.flush()
        assert LogLine.objects.filter(deployment=deployment).count() == 11
    finally:
        writer.close()


@pytest.mark.django_db(transaction=True)
def test_the_background_timer_flushes_a_quiet_writer(deployment):
    with LogWriter(deployment.pk, flush_interval=0.05, batch_size=1000) as writer:
        writer.line("only line")
        deadline = time.monotonic() + 5
        while not LogLine.objects.filter(deployment=deployment).exists() and time.monotonic() < deadline:
            time.sleep(0.02)

        assert LogLine.objects.filter(deployment=deployment).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_line_logged_after_close_is_still_stored(deployment):
    writer = LogWriter(deployment.pk, flush_interval=60)
    writer.close()

    writer.line("straggler")

    assert [line.text for line in LogLine.objects.filter(deployment=deployment)] == ["straggler"]


@pytest.mark.django_db(transaction=True)
def test_lines_from_several_threads_are_all_stored_once_in_stream_order(deployment):
    with LogWriter(deployment.pk, flush_interval=0.01, batch_size=37) as writer:

        def log(thread_no: int) -> None:
            for i in range(250):
                writer.line(f"t{thread_no} {i}")

        threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    rows = list(LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq"))
    assert len(rows) == 1000
    assert len({row.text for row in rows}) == 1000
    assert [row.event_id for row in rows] == [entry_id for entry_id, _ in stream_lines(deployment)]
    for n in range(4):  # each thread's lines keep their order
        assert [r.text for r in rows if r.text.startswith(f"t{n} ")] == [f"t{n} {i}" for i in range(250)]


@pytest.mark.django_db(transaction=True)
def test_lines_reach_the_database_while_redis_is_down(deployment, caplog):
    # Attach directly: an earlier Celery worker in the session may have rewired the root logger.
    logger = logging.getLogger("deployments.logs")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="deployments.logs")
    # Nothing listens on port 1.
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True, retry=Retry(NoBackoff(), 1))
    with LogWriter(deployment.pk, redis=dead) as writer:
        for i in range(50):
            writer.line(f"line {i}")
        writer.event("stage", name="build", status="running")

    rows = list(LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq"))
    assert [r.text for r in rows] == [f"line {i}" for i in range(50)]
    assert len({r.event_id for r in rows}) == 50
    logger.removeHandler(caplog.handler)
    assert "Redis unavailable" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_ids_stay_increasing_when_redis_fails_mid_run(deployment):
    class FailingAfter:
        """The real client until `fail` is set; then every command fails like a lost connection."""

        fail = False

        def __getattr__(self, name):
            if self.fail:
                raise redis.ConnectionError("gone")
            return getattr(get_redis(), name)

    client = FailingAfter()
    with LogWriter(deployment.pk, redis=client) as writer:
        writer.line("before")
        writer.flush()  # lines go to Redis in the background: make sure this one did
        client.fail = True
        writer.line("during 1")
        writer.line("during 2")

    rows = list(LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq"))
    assert [r.text for r in rows] == ["before", "during 1", "during 2"]
    assert rows[0].event_id == stream_lines(deployment)[0][0]


@pytest.mark.django_db(transaction=True)
def test_events_go_to_the_stream_but_not_the_database(deployment):
    with LogWriter(deployment.pk) as writer:
        writer.event("stage", name="build", status="running")
        writer.event("end", status="succeeded")
    publish_event(deployment.pk, "status", status="failed")

    kinds = [f for _, f in get_redis().xrange(stream_key(deployment.pk))]
    assert kinds == [
        {"type": "stage", "name": "build", "status": "running"},
        {"type": "end", "status": "succeeded"},
        {"type": "status", "status": "failed"},
    ]
    assert not LogLine.objects.filter(deployment=deployment).exists()


@pytest.mark.django_db(transaction=True)
def test_closing_the_writer_makes_the_stream_expire(deployment, settings):
    settings.LOG_STREAM_TTL = 123
    with LogWriter(deployment.pk) as writer:
        writer.line("x")
        writer.flush()
        assert get_redis().ttl(stream_key(deployment.pk)) > 123  # alive while the run lasts

    assert 0 < get_redis().ttl(stream_key(deployment.pk)) <= 123


@pytest.mark.django_db(transaction=True)
def test_stream_is_capped_at_the_configured_length(deployment, settings):
    settings.LOG_STREAM_MAXLEN = 100
    with LogWriter(deployment.pk, batch_size=500) as writer:
        for i in range(1000):
            writer.line(f"line {i}")

    # Approximate trimming keeps whole macro nodes, so allow some slack over 100.
    assert get_redis().xlen(stream_key(deployment.pk)) < 300
    assert LogLine.objects.filter(deployment=deployment).count() == 1000


def test_publish_event_reports_a_redis_failure_instead_of_raising(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    assert publish_event(1, "status", status="running") is False


# --- history ---------------------------------------------------------------------


@pytest.fixture
def stored_lines(deployment):
    LogLine.objects.bulk_create(
        LogLine(deployment=deployment, entry_ms=1000 + i // 3, entry_seq=i % 3, text=f"line {i}")
        for i in range(9)
    )
    return deployment


def texts(lines):
    return [line.text for line in lines]


def test_history_returns_lines_in_stream_order(stored_lines):
    assert texts(history(stored_lines)) == [f"line {i}" for i in range(9)]


def test_history_after_an_id_is_exclusive(stored_lines):
    assert texts(history(stored_lines, after="1001-1")) == ["line 5", "line 6", "line 7", "line 8"]


def test_history_before_an_id_is_exclusive(stored_lines):
    assert texts(history(stored_lines, before="1001-0", tail=2)) == ["line 1", "line 2"]


def test_history_tail_keeps_the_last_lines_in_order(stored_lines):
    assert texts(history(stored_lines, tail=3)) == ["line 6", "line 7", "line 8"]


def test_history_limit_keeps_the_first_lines(stored_lines):
    assert texts(history(stored_lines.pk, after="1000-2", limit=2)) == ["line 3", "line 4"]


def test_history_ignores_a_garbage_resume_point(stored_lines):
    assert len(history(stored_lines, after="garbage")) == 9
