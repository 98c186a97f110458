"""The batching SSE view and its fan-out: one Redis reader per deployment and event
loop, a bounded queue per follower, resync from history for one that falls behind."""

import asyncio
import json

import pytest

from deployments import log_fanout, streams
from deployments.logs import LogWriter
from tests.live import run_coroutine
from tests.views import test_stream
from tests.views.test_stream import Events, db_ids, events_url, json_lines

# The stream tests' fixtures: a real uvicorn, a logged-in client, a running deployment.
server, viewer, deployment, open_writer, http = (
    test_stream.server,
    test_stream.viewer,
    test_stream.deployment,
    test_stream.open_writer,
    test_stream.http,
)

pytestmark = [pytest.mark.urls("tests.views.stream_urls"), pytest.mark.django_db(transaction=True)]


def test_one_read_batch_becomes_one_lines_event(http, deployment):
    with LogWriter(deployment.pk) as writer:
        for i in range(300):
            writer.line(f"line {i}", stage="build")
        writer.event("end", status="succeeded")

    with http.stream("GET", events_url(deployment)) as response:
        events = Events(response).rest()

    batches = [e for e in events if e["event"] == "lines"]
    assert len(batches) == 1
    lines = json.loads(batches[0]["data"])
    assert [line["text"] for line in lines] == [f"line {i}" for i in range(300)]
    assert batches[0]["id"] == lines[-1]["id"] == db_ids(deployment)[-1]


def test_resume_with_last_event_id_in_the_page_format_is_exact(http, deployment, open_writer):
    writer = open_writer()
    for i in range(10):
        writer.line(f"line {i}")
    writer.flush()

    with http.stream("GET", events_url(deployment)) as response:
        first = Events(response).take(1, "lines")
    for i in range(10, 25):
        writer.line(f"line {i}")
    writer.event("end", status="succeeded")
    writer.close()
    with http.stream("GET", events_url(deployment), headers={"Last-Event-ID": first[-1]["id"]}) as response:
        rest = Events(response).rest()

    seen = json_lines(first) + json_lines(rest)
    assert [line["text"] for line in seen] == [f"line {i}" for i in range(25)]
    assert [line["id"] for line in seen] == db_ids(deployment)
    assert rest[-1] == {"event": "end", "data": "succeeded"}


async def _lines_until_end(events, texts: list[str]) -> None:
    async for chunk in events:
        for block in chunk.split("\n\n"):
            if block.startswith("id: ") and "\nevent: line\n" in block:
                texts.append(block.split("\ndata: ", 1)[1])
            if "event: end" in block:
                return


async def _take_lines(events, n: int, texts: list[str]) -> None:
    while len(texts) < n:
        chunk = await anext(events)
        texts.extend(
            block.split("\ndata: ", 1)[1]
            for block in chunk.split("\n\n")
            if block.startswith("id: ") and "\nevent: line\n" in block
        )


def test_followers_in_one_process_share_one_reader_and_a_slow_one_is_resynced(deployment, monkeypatch):
    # Tiny queues and reads, so the followers that do not read overflow at once.
    monkeypatch.setattr(log_fanout, "FOLLOWER_QUEUE", 2)
    monkeypatch.setattr(log_fanout, "READ_COUNT", 10)
    catch_ups = []
    real_catch_up = streams._catch_up

    def counting(pk, last, upto, *, as_text):
        catch_ups.append(upto)
        return real_catch_up(pk, last, upto, as_text=as_text)

    monkeypatch.setattr(streams, "_catch_up", counting)
    with LogWriter(deployment.pk) as writer:
        for i in range(5):
            writer.line(f"line {i}")

    def write(start: int, stop: int, *, end: bool = False) -> None:
        with LogWriter(deployment.pk) as writer:
            for i in range(start, stop):
                writer.line(f"line {i}")
            if end:
                writer.event("end", status="succeeded")

    async def scenario():
        one = streams._events(deployment.pk, (0, 0), as_text=True)
        two = streams._events(deployment.pk, (0, 0), as_text=True)
        seen_one: list[str] = []
        seen_two: list[str] = []
        await _take_lines(one, 5, seen_one)
        await _take_lines(two, 5, seen_two)
        readers = log_fanout.reader_count(deployment.pk)
        # Let both finish their replay and wait on their queues, then send them a line.
        waiting = [
            asyncio.create_task(_take_lines(one, 6, seen_one)),
            asyncio.create_task(_take_lines(two, 6, seen_two)),
        ]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(write, 5, 6)
        await asyncio.gather(*waiting)
        # One follower reads along, the other reads nothing while 394 lines go by:
        # the reader keeps going for the first, and the second's queue stays bounded.
        fast = asyncio.create_task(_lines_until_end(one, seen_one))
        await asyncio.to_thread(write, 6, 400, end=True)
        await fast
        await _lines_until_end(two, seen_two)
        await one.aclose()
        await two.aclose()
        await asyncio.sleep(0)
        return readers, seen_one, seen_two, log_fanout.reader_count(deployment.pk)

    readers, seen_one, seen_two, readers_after = run_coroutine(scenario())

    expected = [f"line {i}" for i in range(400)]
    assert readers == 1
    assert seen_one == expected and seen_two == expected
    assert [upto for upto in catch_ups if upto is not None], "no follower was resynced from history"
    assert readers_after == 0
