"""The Insights page: DORA metrics on hand-computed fixtures, band edges, empty ranges,
permissions, CSV against the tables, and constant queries at scale."""

from __future__ import annotations

import csv
import io
import itertools
import re
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deployments.models import Deployment, Environment, Repository, Stage, StageStatus, Status, Trigger
from deployments.selectors import insights as dora
from deployments.services import deployments as deployment_services

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(datetime(2026, 3, 10, 12, 0))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(2026, 3, day, hour, minute))


def run(repo, env, status, finished, *, committed=None, trigger=Trigger.CLICK, reached_rollout=True):
    deployment = Deployment.objects.create(
        repository=repo, environment=env, ref="main", status=status, trigger=trigger,
        created_at=finished - timedelta(minutes=10), started_at=finished - timedelta(minutes=10),
        finished_at=finished, committed_at=committed,
    )  # fmt: skip
    if status == Status.FAILED and reached_rollout:
        Stage.objects.create(
            deployment=deployment, name="rollout", position=5, status=StageStatus.FAILED,
            started_at=finished - timedelta(minutes=2), finished_at=finished,
        )  # fmt: skip
    return deployment


@pytest.fixture
def live(make_environment) -> Environment:
    return make_environment("live", order=30)


@pytest.fixture
def history(repository, live, make_environment):
    """A week of `demo` in live (the numbers in the comments are what the tests expect)."""
    dev = make_environment("dev", order=10)
    run(repository, live, Status.SUCCEEDED, at(3, 23), committed=at(3, 1))  # before the range
    run(repository, live, Status.SUCCEEDED, at(5, 10), committed=at(5, 8))  # lead 2 h
    run(repository, live, Status.SUCCEEDED, at(6, 10), committed=at(5, 10))  # lead 24 h
    run(repository, live, Status.FAILED, at(7, 9))  # outage begins
    run(repository, live, Status.ROLLED_BACK, at(7, 10))  # still out
    run(repository, live, Status.SUCCEEDED, at(7, 12), committed=at(7, 8))  # lead 4 h, restored after 3 h
    run(repository, live, Status.FAILED, at(8, 9), reached_rollout=False)  # a failed build: no rollout
    run(repository, live, Status.CANCELLED, at(8, 10))  # cancelled: not a rollout
    run(repository, live, Status.FAILED, at(9, 9, 30))  # outage begins
    run(repository, live, Status.SUCCEEDED, at(9, 10), trigger=Trigger.ROLLBACK)  # restored after 30 min
    run(repository, dev, Status.FAILED, at(9, 11))  # another environment
    return live


def by_key(result: dora.Insights) -> dict[str, dora.Metric]:
    return {m.key: m for m in result.metrics}


def test_each_metric_matches_the_hand_computed_week(history):
    result = dora.dora_metrics(history, days=7, now=NOW)

    assert [b.start.day for b in result.buckets] == [4, 5, 6, 7, 8, 9, 10]
    assert result.by == "day" and result.rollouts == 6
    m = by_key(result)
    # 3 successful changes in 7 days: 3.0 a week, between daily and weekly.
    assert m["deployment_frequency"].series == [0, 1, 1, 1, 0, 0, 0]
    assert (m["deployment_frequency"].summary, m["deployment_frequency"].band) == ("3.0 per week", "high")
    # Lead times 2 h, 24 h, 4 h: median 4 h.
    assert m["lead_time"].series == [None, 2.0, 24.0, 4.0, None, None, None]
    assert (m["lead_time"].summary, m["lead_time"].band) == ("4.0 h (median)", "elite")
    # 3 failed of 6 change rollouts; the rollback run is no change, the failed build no rollout.
    assert m["change_failure_rate"].series == [None, 0.0, 0.0, 66.7, None, 100.0, None]
    assert (m["change_failure_rate"].summary, m["change_failure_rate"].band) == ("50.0% (3 of 6)", "low")
    # Outages from their first failure: 3 h and 30 min, median 1.75 h.
    assert m["time_to_restore"].series == [None, None, None, 3.0, None, 0.5, None]
    assert (m["time_to_restore"].summary, m["time_to_restore"].band) == ("1.8 h (median)", "high")
    assert m["time_to_restore"].note == ""


def test_one_application_and_an_open_outage(history, repository):
    other = Repository.objects.create(name="other", git_url=repository.git_url, image_name="t/other")
    run(other, history, Status.SUCCEEDED, at(6, 9), committed=at(6, 8, 30))
    run(other, history, Status.ROLLED_BACK, at(10, 9))

    result = dora.dora_metrics(history, days=7, now=NOW, application="other")

    m = by_key(result)
    assert result.rollouts == 2
    assert m["lead_time"].summary == "30 min (median)" and m["lead_time"].band == "elite"
    assert m["change_failure_rate"].summary == "50.0% (1 of 2)"
    assert m["time_to_restore"].summary == "no data" and m["time_to_restore"].band is None
    assert m["time_to_restore"].note == "1 application(s) not restored yet"


def test_ninety_days_are_counted_by_week(history):
    result = dora.dora_metrics(history, days=90, now=NOW)

    assert result.by == "week" and len(result.buckets) == 13
    assert result.buckets[0].start == (NOW - timedelta(days=89)).date()
    assert sum(by_key(result)["deployment_frequency"].series) == 4  # the one on the 3rd too


def test_an_empty_range_has_no_data_not_elite(live):
    result = dora.dora_metrics(live, days=30, now=NOW)

    for metric in result.metrics:
        assert (metric.summary, metric.band) == ("no data", None), metric.key
        assert set(metric.series) == {None}


def test_a_deployment_a_day_is_elite_and_one_less_is_high(repository, live):
    for day in range(4, 11):
        run(repository, live, Status.SUCCEEDED, at(day, 9))
    assert by_key(dora.dora_metrics(live, days=7, now=NOW))["deployment_frequency"].band == "elite"
    Deployment.objects.filter(finished_at=at(4, 9)).update(status=Status.CANCELLED)
    assert by_key(dora.dora_metrics(live, days=7, now=NOW))["deployment_frequency"].band == "high"


@pytest.mark.parametrize(
    ("band", "value", "expected"),
    [
        (dora.frequency_band, 1, "elite"),
        (dora.frequency_band, 0.99, "high"),
        (dora.frequency_band, 1 / 7, "high"),
        (dora.frequency_band, 1 / 7 - 0.001, "medium"),
        (dora.frequency_band, 1 / 30, "medium"),
        (dora.frequency_band, 1 / 31, "low"),
        (dora.lead_time_band, timedelta(hours=24) - timedelta(seconds=1), "elite"),
        (dora.lead_time_band, timedelta(hours=24), "high"),
        (dora.lead_time_band, timedelta(days=7), "medium"),
        (dora.lead_time_band, timedelta(days=30), "low"),
        (dora.failure_rate_band, 5, "elite"),
        (dora.failure_rate_band, 5.1, "high"),
        (dora.failure_rate_band, 10, "high"),
        (dora.failure_rate_band, 15, "medium"),
        (dora.failure_rate_band, 15.1, "low"),
        (dora.restore_band, timedelta(minutes=59), "elite"),
        (dora.restore_band, timedelta(hours=1), "high"),
        (dora.restore_band, timedelta(days=1), "medium"),
        (dora.restore_band, timedelta(days=7), "low"),
    ],
)
def test_band_edges(band, value, expected):
    assert band(value) == expected


def test_a_promotion_keeps_the_commit_time_for_lead_time(admin, repository, live, make_environment):
    dev = make_environment("dev", order=10)
    source = run(repository, dev, Status.SUCCEEDED, at(9, 9), committed=at(9, 8))
    Deployment.objects.filter(pk=source.pk).update(
        commit_sha="a" * 40, image_digest="r/demo@sha256:" + "a" * 64
    )
    source.refresh_from_db()

    promoted = deployment_services.deployment_promote(
        user=admin, source=dev, target=live, repository=repository, expected_digest=source.image_digest
    )

    assert promoted.committed_at == at(9, 8)


# -- the page --------------------------------------------------------------------------------


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def recent_history(repository, env):
    """Two days before today (the page has no clock to set): a failure, then two successes."""
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    run(repository, env, Status.FAILED, today - timedelta(hours=30))
    run(repository, env, Status.SUCCEEDED, today - timedelta(hours=20), committed=today - timedelta(hours=26))
    run(repository, env, Status.SUCCEEDED, today - timedelta(hours=18), committed=today - timedelta(hours=19))


def tables(html: str) -> dict[str, list[tuple[str, str]]]:
    found = {}
    for key, body in re.findall(
        r'<table class="table data" data-metric="([a-z_]+)">(.*?)</table>', html, re.S
    ):
        rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", body)
        found[key] = [(label, "" if value == "—" else value) for label, value in rows]
    return found


def test_page_shows_four_charts_with_bands_and_tables(admin, repository, live):
    recent_history(repository, live)

    response = login(admin).get(reverse("insights"), {"environment": "live", "days": 7})

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<svg class="chart"') == 4
    assert 'href="/insights/"' in html  # the navigation link
    assert 'id="chart-lead_time-title">Lead time for changes (hours, median), by day</title>' in html
    assert "33.3% (1 of 3)" in html and 'class="band band-low"' in html
    # Every day has a frequency (0 too); lead time on 1 day, failure rate on 2, restore on 1.
    assert len(re.findall(r'<rect class="point"', html)) == 7 + 1 + 2 + 1
    yesterday, today = timezone.localdate() - timedelta(days=1), timezone.localdate()
    assert tables(html)["lead_time"][-2:] == [(yesterday.isoformat(), "3.5"), (today.isoformat(), "")]


def test_range_links_keep_the_filters_and_work_without_javascript(admin, repository, live):
    html = (
        login(admin).get(reverse("insights"), {"environment": "live", "application": "demo"}).content.decode()
    )

    assert 'href="?environment=live&amp;application=demo&amp;days=90"' in html
    assert 'href="?environment=live&amp;application=demo&amp;days=30" aria-current="page"' in html
    assert 'action="/insights/"' in html and "<button>Show</button>" in html


def test_an_empty_range_says_no_data_on_the_page(admin, live):
    html = login(admin).get(reverse("insights")).content.decode()

    assert html.count(">no data</text>") == 4 and html.count('<p class="summary">no data') == 4
    assert "band-elite" not in html


def test_csv_matches_the_tables(admin, repository, live):
    recent_history(repository, live)
    client = login(admin)
    params = {"environment": "live", "days": 30}

    page = tables(client.get(reverse("insights"), params).content.decode())
    response = client.get(reverse("insights"), {**params, "format": "csv"})

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="insights-live-all-30d.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][0] == "day" and len(rows) == 31
    for column, key in enumerate(
        ["deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"], start=1
    ):
        assert [(row[0], row[column]) for row in rows[1:]] == page[key], key
    assert any(row[1] == "2" for row in rows[1:])


def test_users_see_only_environments_they_may_view(dev, repository, live, make_environment):
    secret = make_environment("secret", order=40)
    secret.deploy_groups.clear()
    secret.approve_groups.clear()
    client = login(dev)

    html = client.get(reverse("insights")).content.decode()

    assert '<option value="live" selected>' in html and "secret" not in html
    assert client.get(reverse("insights"), {"environment": "secret"}).status_code == 404
    assert client.get(reverse("insights"), {"days": "365"}).status_code == 404


def test_a_user_with_no_environment_sees_none(outsider, live):
    html = login(outsider).get(reverse("insights")).content.decode()

    assert "There is no environment you may view." in html and "<svg" not in html


def test_anonymous_users_are_sent_to_log_in(live):
    response = Client().get(reverse("insights"))

    assert response.status_code == 302 and "/login/" in response["Location"]


# -- scale ------------------------------------------------------------------------------------


STATUSES = [Status.SUCCEEDED] * 6 + [Status.FAILED, Status.CANCELLED, Status.ROLLED_BACK]


def add_rollouts(placements, count: int, start: int) -> None:
    """`count` finished runs spread over the last 80 days, failed ones with a rollout stage."""
    now = timezone.now()
    rows = []
    for i, (repository, environment) in zip(range(start, start + count), itertools.cycle(placements)):
        finished = now - timedelta(minutes=(i * 7919) % (80 * 24 * 60))
        rows.append(
            Deployment(
                repository=repository, environment=environment, ref="main", status=STATUSES[i % len(STATUSES)],
                commit_sha=f"{i:040x}", created_at=finished - timedelta(minutes=5), started_at=finished,
                finished_at=finished, committed_at=finished - timedelta(hours=i % 50),
            )
        )  # fmt: skip
    created = Deployment.objects.bulk_create(rows, batch_size=2000)
    Stage.objects.bulk_create(
        [
            Stage(
                deployment=d, name="rollout", position=5, status=StageStatus.FAILED, started_at=d.finished_at
            )
            for d in created
            if d.status == Status.FAILED
        ],
        batch_size=2000,
    )


def test_the_page_needs_the_same_queries_at_1000_and_20000_deployments(admin, repository, make_environment):
    envs = [make_environment(name, order=10 * i) for i, name in enumerate(("dev", "live"), 1)]
    apps = [repository] + [
        Repository.objects.create(name=f"app{i}", git_url=repository.git_url, image_name=f"t/app{i}")
        for i in range(3)
    ]
    placements = [(a, e) for a in apps for e in envs]
    client = login(admin)
    urls = [
        f"{reverse('insights')}?environment=live&days={days}{extra}"
        for days in dora.RANGES
        for extra in ("", "&application=demo", "&format=csv")
    ]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            assert response.status_code == 200, url
            found.append(len(queries))
        return found

    add_rollouts(placements, 1000, start=0)
    small = counts()
    add_rollouts(placements, 19_000, start=1000)
    assert Deployment.objects.count() == 20_000
    large = counts()

    assert large == small
    print("insights queries per URL:", dict(zip(urls, large, strict=True)))


def test_lead_times_under_an_hour_are_charted_in_minutes(repository, live):
    run(repository, live, Status.SUCCEEDED, at(9, 10), committed=at(9, 9, 58))  # 2 min
    run(repository, live, Status.SUCCEEDED, at(8, 10), committed=at(8, 9, 30))  # 30 min
    lead = next(m for m in dora.dora_metrics(live, days=7, now=NOW).metrics if m.key == "lead_time")
    assert lead.unit == "minutes, median"
    assert [v for v in lead.series if v is not None] == [30.0, 2.0]
    assert lead.summary == "16 min (median)"


def test_rollouts_fall_into_their_local_day_across_a_daylight_saving_change(repository, live, settings):
    from zoneinfo import ZoneInfo

    settings.TIME_ZONE = "Europe/Berlin"
    berlin = ZoneInfo("Europe/Berlin")
    # Clocks go forward at 02:00 on 2026-03-29; each day starts at its own local midnight.
    for local in [datetime(2026, 3, 28, 23, 30), datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 23, 59)]:
        run(repository, live, Status.SUCCEEDED, local.replace(tzinfo=berlin), committed=None)
    now = datetime(2026, 3, 30, 12, 0, tzinfo=berlin)
    result = dora.dora_metrics(live, days=7, now=now)
    per_day = {b.start.isoformat(): b.deployments for b in result.buckets if b.deployments}
    assert per_day == {"2026-03-28": 1, "2026-03-29": 2}
