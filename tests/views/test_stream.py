"""The live-log SSE view, served by a real uvicorn in a thread of this process so the
test database and settings are shared and responses really stream."""

import json
import random
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from django.contrib.auth.models import User
from django.test import Client

from deployments import log_events, streams
from deployments.logs import LogWriter, get_redis, stream_key
from deployments.models import Deployment, Environment, LogLine, Repository, Stage
from deployments.templatetags.shipmate import badge_html, stage_html

pytestmark = [pytest.mark.urls("tests.views.stream_urls"), pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server():
    from pipeline_ui.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def viewer():
    return User.objects.create_user("viewer", password="x")


@pytest.fixture
def deployment(viewer):
    repo = Repository.objects.create(
        name="sse-app", git_url="https://git.invalid/app.git", image_name="sse/app"
    )
    env = Environment.objects.create(name="sse-env")
    # A random pk keeps this test's stream apart from other runs sharing the Redis server.
    dep = Deployment.objects.create(
        pk=random.randint(10**8, 10**9),
        repository=repo,
        environment=env,
        ref="main",
        requested_by=viewer,
        status="running",
    )
    get_redis().delete(stream_key(dep.pk))
    yield dep
    get_redis().delete(stream_key(dep.pk))


@pytest.fixture
def open_writer(deployment):
    """A LogWriter closed at teardown even if the test fails, so no flush outlives the database."""
    writers = []

    def make(**kwargs):
        writers.append(LogWriter(deployment.pk, **kwargs))
        return writers[-1]

    yield make
    for writer in writers:
        writer.close()


@pytest.fixture
def http(server, viewer):
    django_client = Client()
    django_client.force_login(viewer)
    cookies = {"sessionid": django_client.cookies["sessionid"].value}
    with httpx.Client(base_url=server, cookies=cookies, timeout=10) as client:
        yield client


class Events:
    """Reads server-sent events off a streaming httpx response, comments included."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, str]:
        event: dict[str, str] = {}
        data: list[str] = []
        for line in self._lines:
            if line == "":
                if event or data:
                    if data:
                        event["data"] = "\n".join(data)
                    return event
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event["comment"] = value
            elif name == "data":
                data.append(value)
            else:
                event[name] = value
        raise StopIteration

    def take(self, n: int, kind: str = "line") -> list[dict[str, str]]:
        found = []
        for event in self:
            if event.get("event") == kind:
                found.append(event)
                if len(found) == n:
                    break
        return found

    def rest(self) -> list[dict[str, str]]:
        """Every event up to and including `end`, without comments and the retry hint."""
        found = []
        for event in self:
            if "event" in event:
                found.append(event)
                if event["event"] == "end":
                    break
        return found


def events_url(deployment, **params):
    return httpx.URL(f"/deployments/{deployment.pk}/events", params=params)


def line_texts(events):
    return [e["data"] for e in events if e["event"] == "line"]


def json_lines(events):
    """The lines of the page's format: each `lines` event is a JSON array of them."""
    return [line for e in events if e["event"] == "lines" for line in json.loads(e["data"])]


def db_ids(deployment):
    return [
        line.event_id
        for line in LogLine.objects.filter(deployment=deployment).order_by("entry_ms", "entry_seq")
    ]


def test_response_is_an_uncached_event_stream_starting_with_a_retry_hint(http, deployment):
    with LogWriter(deployment.pk) as writer:
        writer.event("end", status="succeeded")

    with http.stream("GET", events_url(deployment)) as response:
        first = next(Events(response))

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert first == {"retry": "2000"}


def test_reconnecting_with_last_event_id_resumes_without_gap_or_duplicate(http, deployment, open_writer):
    writer = open_writer()
    for i in range(10):
        writer.line(f"line {i}")

    with http.stream("GET", events_url(deployment, format="text")) as response:
        seen = Events(response).take(5)
    assert line_texts(seen) == [f"line {i}" for i in range(5)]

    for i in range(10, 20):
        writer.line(f"line {i}")
    writer.event("end", status="succeeded")
    writer.close()

    with http.stream(
        "GET", events_url(deployment, format="text"), headers={"Last-Event-ID": seen[-1]["id"]}
    ) as r:
        rest = Events(r).rest()

    assert line_texts(rest) == [f"line {i}" for i in range(5, 20)]
    assert [e["id"] for e in seen + rest[:-1]] == db_ids(deployment)
    assert rest[-1] == {"event": "end", "data": "succeeded"}


def test_lines_trimmed_from_redis_come_from_the_database_with_the_same_ids(http, deployment):
    with LogWriter(deployment.pk) as writer:
        for i in range(30):
            writer.line(f"line {i}")
        writer.event("end", status="failed")
    get_redis().xtrim(stream_key(deployment.pk), maxlen=11, approximate=False)  # lines 20..29 and the end
    ids = db_ids(deployment)

    with http.stream("GET", events_url(deployment, format="text")) as response:
        events = Events(response).rest()
    with http.stream("GET", events_url(deployment, format="text", after=ids[4])) as response:
        resumed = Events(response).rest()

    assert line_texts(events) == [f"line {i}" for i in range(30)]
    assert [e["id"] for e in events if e["event"] == "line"] == ids
    assert line_texts(resumed) == [f"line {i}" for i in range(5, 30)]
    assert [e["id"] for e in resumed if e["event"] == "line"] == ids[5:]
    assert events[-1]["event"] == resumed[-1]["event"] == "end"


def test_a_resume_point_inside_the_redis_part_reads_only_redis(http, deployment):
    with LogWriter(deployment.pk) as writer:
        for i in range(30):
            writer.line(f"line {i}")
        writer.event("end", status="failed")
    get_redis().xtrim(stream_key(deployment.pk), maxlen=11, approximate=False)
    LogLine.objects.filter(deployment=deployment).delete()  # proves nothing comes from the database
    redis_ids = [entry_id for entry_id, _ in get_redis().xrange(stream_key(deployment.pk))]

    with http.stream(
        "GET", events_url(deployment, format="text"), headers={"Last-Event-ID": redis_ids[2]}
    ) as r:
        events = Events(r).rest()

    assert line_texts(events) == [f"line {i}" for i in range(23, 30)]


def test_a_finished_deployment_without_a_stream_is_served_from_the_database_then_ends(http, deployment):
    Stage.objects.create(deployment=deployment, name="build", position=1, status="succeeded")
    with LogWriter(deployment.pk) as writer:
        for i in range(700):  # more than one database page
            writer.line(f"line {i}", stage="build")
    get_redis().delete(stream_key(deployment.pk))
    Deployment.objects.filter(pk=deployment.pk).update(status="succeeded")

    started = time.monotonic()
    with http.stream("GET", events_url(deployment)) as response:
        events = Events(response).rest()

    lines = json_lines(events)
    assert [(line["stage"], line["text"]) for line in lines] == [("build", f"line {i}") for i in range(700)]
    assert [line["id"] for line in lines] == db_ids(deployment)
    assert [e["id"] for e in events if e["event"] == "lines"][-1] == lines[-1]["id"]
    stage = {"name": "build", "status": "succeeded", "html": stage_html("build", "succeeded")}
    assert {"event": "stage", "data": json.dumps(stage)} in events
    status = {"status": "succeeded", "html": badge_html("succeeded")}
    assert {"event": "status", "data": json.dumps(status)} in events
    assert events[-1] == {"event": "end", "data": "succeeded"}
    assert time.monotonic() - started < streams.KEEPALIVE_MS / 1000  # ended without waiting for a keepalive


def test_anonymous_user_gets_403_and_no_log(server, deployment):
    with LogWriter(deployment.pk) as writer:
        writer.line("private line")

    response = httpx.get(f"{server}/deployments/{deployment.pk}/events", timeout=10)

    assert response.status_code == 403
    assert "private line" not in response.text


def test_user_without_access_to_the_environment_gets_403(server, deployment):
    django_client = Client()
    django_client.force_login(User.objects.create_user("stranger", password="x"))
    with LogWriter(deployment.pk) as writer:
        writer.line("private line")

    response = httpx.get(
        f"{server}/deployments/{deployment.pk}/events",
        cookies={"sessionid": django_client.cookies["sessionid"].value},
        timeout=10,
    )

    assert response.status_code == 403
    assert "private line" not in response.text


def test_unknown_deployment_is_404(http):
    assert http.get("/deployments/1/events").status_code == 404


def write_a_failed_build(deployment, *, final_status: bool = False) -> None:
    with LogWriter(deployment.pk) as writer:
        writer.event("status", status="running")
        writer.event("stage", name="build", status="running")
        writer.line("building", stage="build")
        writer.event("stage", name="build", status="failed")
        if final_status:
            writer.event("status", status="failed")
        writer.event("end", status="failed")


def test_text_format_sends_plain_lines_and_the_default_sends_them_as_json(http, deployment):
    with LogWriter(deployment.pk) as writer:
        writer.line("<b>bold</b> & co", stage="test")
        writer.event("end", status="succeeded")

    with http.stream("GET", events_url(deployment, format="text")) as response:
        plain = line_texts(Events(response).rest())
    with http.stream("GET", events_url(deployment)) as response:
        lines = json_lines(Events(response).rest())

    assert plain == ["<b>bold</b> & co"]
    # The page renders text through text nodes only (static/js/ansi.js), never as markup.
    assert [(line["stage"], line["text"]) for line in lines] == [("test", "<b>bold</b> & co")]
    assert lines[0]["ts"] == int(lines[0]["id"].split("-")[0])


def test_stage_and_status_events_come_in_stream_order_between_the_line_batches(http, deployment):
    write_a_failed_build(deployment)

    with http.stream("GET", events_url(deployment)) as response:
        events = Events(response).rest()

    assert [(e["event"], json.loads(e["data"]) if e["event"] != "end" else e["data"]) for e in events] == [
        ("status", {"status": "running", "html": '<span class="badge badge-running">Running</span>'}),
        ("stage", {"name": "build", "status": "running", "html": stage_html("build", "running")}),
        (
            "lines",
            [
                {
                    "id": events[2]["id"],
                    "stage": "build",
                    "text": "building",
                    "ts": int(events[2]["id"].split("-")[0]),
                }
            ],
        ),
        ("stage", {"name": "build", "status": "failed", "html": stage_html("build", "failed")}),
        ("end", "failed"),
    ]
    assert all("id" in e for e in events[:-1])


def test_text_format_sends_stage_and_status_changes_as_plain_sentences(http, deployment):
    write_a_failed_build(deployment, final_status=True)

    with http.stream("GET", events_url(deployment, format="text")) as response:
        events = Events(response).rest()

    assert [(e["event"], e["data"]) for e in events] == [
        ("status", "status: running"),
        ("stage-build", "stage build: running"),
        ("line", "building"),
        ("stage-build", "stage build: failed"),
        ("status", "status: failed"),
        ("end", "failed"),
    ]


def test_text_format_replays_the_current_state_as_plain_sentences(http, deployment):
    """A finished run with no Redis stream left: the state snapshot is text too."""
    Stage.objects.create(deployment=deployment, name="build", position=1, status="succeeded")
    Deployment.objects.filter(pk=deployment.pk).update(status="succeeded")

    with http.stream("GET", events_url(deployment, format="text")) as response:
        body = response.read().decode()

    assert "data: stage build: succeeded" in body
    assert "data: status: succeeded" in body
    assert "<" not in body


def test_live_lines_arrive_while_connected_and_idle_streams_get_keepalives(
    http, deployment, open_writer, monkeypatch
):
    monkeypatch.setattr(streams, "KEEPALIVE_MS", 200)
    writer = open_writer()
    writer.line("first")

    with http.stream("GET", events_url(deployment, format="text")) as response:
        events = Events(response)
        assert line_texts(events.take(1)) == ["first"]
        assert next(events) == {"comment": "keepalive"}

        writer.line("second")
        assert line_texts(events.take(1)) == ["second"]

        # A worker that died without an "end" entry: the finished status ends the stream.
        writer.close()
        Deployment.objects.filter(pk=deployment.pk).update(status="failed")
        assert events.rest()[-1] == {"event": "end", "data": "failed"}


def test_followers_share_one_redis_reader_released_when_the_last_one_leaves(http, deployment, open_writer):
    open_writer().line("first")

    def sse_connections():
        return [c for c in get_redis().client_list() if c["name"] == f"shipmate-sse-{deployment.pk}"]

    def settle(count: int) -> list[int]:
        """The connection counts seen over a moment (the reader connects asynchronously)."""
        seen, deadline = [], time.monotonic() + 2
        while time.monotonic() < deadline:
            seen.append(len(sse_connections()))
            if seen[-1] == count and len(seen) >= 5:
                break
            time.sleep(0.05)
        return seen

    # Each Events keeps its response's line iterator alive: dropping it closes the stream.
    with http.stream("GET", events_url(deployment)) as response:
        first = Events(response)
        first.take(1, "lines")
        assert settle(1)[-1] == 1
        with http.stream("GET", events_url(deployment)) as second_response:
            second = Events(second_response)
            second.take(1, "lines")
            seen = settle(1)
            assert seen[-1] == 1 and max(seen) == 1, seen  # never a second reader
        assert settle(1)[-1] == 1

    deadline = time.monotonic() + 5
    while sse_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sse_connections() == []


def test_lines_only_in_the_database_are_sent_before_the_end_of_a_finished_deployment(http, deployment):
    with LogWriter(deployment.pk) as writer:
        writer.line("via redis")
    # What a writer does while Redis is down: the line gets a later id, in the database only.
    last_ms = int(db_ids(deployment)[0].split("-")[0])
    LogLine.objects.create(deployment=deployment, entry_ms=last_ms + 5, entry_seq=0, text="database only")
    Deployment.objects.filter(pk=deployment.pk).update(status="failed")

    with http.stream("GET", events_url(deployment, format="text")) as response:
        events = Events(response).rest()

    assert line_texts(events) == ["via redis", "database only"]


def test_multiline_data_is_split_into_several_data_fields():
    assert (
        log_events.sse("line", "a\nb\r\nc\rd", "1-0")
        == "id: 1-0\nevent: line\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )


def test_log_download_is_the_whole_log_as_a_text_attachment(http, deployment):
    with LogWriter(deployment.pk) as writer:
        for i in range(2500):  # more than one page
            writer.line(f"line {i}")

    response = http.get(f"/deployments/{deployment.pk}/log.txt")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="deployment-{deployment.pk}.log"'
    assert response.text == "".join(f"line {i}\n" for i in range(2500))


def test_log_download_needs_a_login(server, deployment):
    assert httpx.get(f"{server}/deployments/{deployment.pk}/log.txt", timeout=10).status_code == 403


def test_badges_escape_labels_and_keep_status_classes_harmless():
    assert (
        badge_html("awaiting_approval")
        == '<span class="badge badge-awaiting_approval">Awaiting approval</span>'
    )
    assert badge_html('x" onclick="y', "<i>") == '<span class="badge badge-x--onclick--y">&lt;i&gt;</span>'
