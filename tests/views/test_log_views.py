"""The log page's JSON endpoints and initial state: search over the stored log,
earlier lines as JSON, line numbers, and the error banner's link to the failing line."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from deployments.log_search import plain
from deployments.models import Deployment, LogLine, Stage, Status

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _deployment(dev, repository, dev_env, texts, **fields):
    deployment = Deployment.objects.create(
        repository=repository, environment=dev_env, ref="main", requested_by=dev, **fields
    )
    LogLine.objects.bulk_create(
        LogLine(deployment=deployment, entry_ms=1000 + i, entry_seq=0, stage=stage, text=text)
        for i, (stage, text) in enumerate(texts)
    )
    return deployment


def _state(html: str) -> dict:
    return json.loads(
        re.search(r'<script id="log-state" type="application/json">(.*?)</script>', html, re.S)[1]
    )


def test_search_returns_matching_stored_lines_with_their_line_numbers(dev, repository, dev_env):
    texts = [("build", f"line {i}") for i in range(30)]
    texts[3] = ("build", "\x1b[31mERROR\x1b[0m: disk full")
    texts[20] = ("test", "an error again")
    texts[21] = ("test", "100% done_ok")
    deployment = _deployment(dev, repository, dev_env, texts)
    client = login(dev)
    url = reverse("deployment_log_search", args=[deployment.pk])

    found = client.get(url, {"q": "error"}).json()
    literal = client.get(url, {"q": "0% done_"}).json()
    wildcard = client.get(url, {"q": "l_ne"}).json()

    assert found["matches"] == [
        {"n": 4, "id": "1003-0", "stage": "build", "text": "ERROR: disk full"},
        {"n": 21, "id": "1020-0", "stage": "test", "text": "an error again"},
    ]
    assert found["more"] is False
    assert [m["n"] for m in literal["matches"]] == [22]
    assert wildcard["matches"] == []  # % and _ are literal characters, not patterns


def test_search_is_permission_checked_like_the_download(client, dev, outsider, repository, dev_env):
    deployment = _deployment(dev, repository, dev_env, [("build", "secret output")])
    url = reverse("deployment_log_search", args=[deployment.pk])

    assert client.get(url, {"q": "secret"}).status_code == 403
    response = login(outsider).get(url, {"q": "secret"})
    assert response.status_code == 403 and b"secret output" not in response.content


def test_earlier_lines_come_as_json_with_a_count(dev, repository, dev_env, settings):
    settings.LOG_PAGE_TAIL = 10
    deployment = _deployment(dev, repository, dev_env, [("build", f"line {i}") for i in range(100)])
    client = login(dev)
    url = reverse("deployment_log_earlier", args=[deployment.pk])

    page = client.get(url, {"format": "json", "before": "1090-0"}).json()
    counted = client.get(url, {"format": "json", "before": "1090-0", "count": "75"}).json()

    assert [line["text"] for line in page["lines"]] == [f"line {i}" for i in range(80, 90)]
    assert page["lines"][0] == {"id": "1080-0", "stage": "build", "text": "line 80", "ts": 1080}
    assert [line["text"] for line in counted["lines"]] == [f"line {i}" for i in range(15, 90)]


def test_the_page_starts_the_renderer_with_numbered_tail_lines_and_no_raw_markup(
    dev, repository, dev_env, settings
):
    settings.LOG_PAGE_TAIL = 10
    settings.LOG_VIEW_MAX_LINES = 1234
    texts = [("build", f"line {i}") for i in range(24)] + [("build", "</script><script>alert(1)</script>")]
    deployment = _deployment(dev, repository, dev_env, texts, status=Status.RUNNING)

    html = login(dev).get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    state = _state(html)

    assert state["first"] == 16 and len(state["lines"]) == 10 and state["live"] is True
    assert state["lines"][-1]["text"] == "</script><script>alert(1)</script>"
    assert state["max_lines"] == 1234
    assert "<script>alert(1)" not in html
    assert 'role="log"' in html and 'aria-live="polite"' in html


def test_a_huge_line_is_cut_for_the_view_but_downloaded_whole(dev, repository, dev_env):
    deployment = _deployment(dev, repository, dev_env, [("build", "x" * 50_000)], status=Status.SUCCEEDED)
    client = login(dev)

    state = _state(client.get(reverse("deployment_detail", args=[deployment.pk])).content.decode())

    assert len(state["lines"][0]["text"]) == 10_000 and state["lines"][0]["full"] == 50_000


def test_the_error_banner_links_to_the_first_line_of_the_failed_stage(dev, repository, dev_env):
    texts = [("checkout", "cloned"), ("build", "step 1"), ("test", "running tests"), ("test", "FAIL")]
    deployment = _deployment(dev, repository, dev_env, texts, status=Status.FAILED, error="tests failed")
    Stage.objects.create(deployment=deployment, name="build", position=1, status="succeeded")
    Stage.objects.create(deployment=deployment, name="test", position=2, status="failed")
    client = login(dev)

    page = client.get(reverse("deployment_detail", args=[deployment.pk])).content.decode()
    fragment = client.get(reverse("deployment_detail", args=[deployment.pk]), HTTP_HX_REQUEST="true")

    assert '<a class="error-line" href="#L3">Go to line 3</a>' in page
    assert 'href="#L3"' in fragment.content.decode()


def test_the_error_banner_falls_back_to_the_line_that_repeats_the_error(dev, repository, dev_env):
    texts = [("", "starting"), ("", "Error: port 8080 in use"), ("", "cleaning up")]
    deployment = _deployment(
        dev, repository, dev_env, texts, status=Status.FAILED, error="Error: port 8080 in use"
    )

    page = login(dev).get(reverse("deployment_detail", args=[deployment.pk])).content.decode()

    assert 'href="#L2"' in page


def test_plain_text_collapses_progress_bars_and_drops_escape_codes():
    assert plain("10%\r50%\r\x1b[32m100%\x1b[0m") == "100%"
    assert plain("\x1b]0;title\x07\x1b[2Kdone\x07") == "done"
    assert plain("tab\tkept") == "tab\tkept"
