"""The four DORA metrics from Shipmate's own records, for one environment (and one
application or all), over the last 7, 30 or 90 days. Definitions and band edges are in
docs/decisions.md ("Insights (issue 12)").

One query reads the rollouts in the range as narrow tuples; everything else is
arithmetic in Python. Medians are what DORA reports and SQL has no portable median,
and a range holds at most a few thousand rollouts per environment.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import Deployment, Environment, Stage, StageStatus, Status, Trigger

RANGES = (7, 30, 90)
DEFAULT_RANGE = 30
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)

ELITE, HIGH, MEDIUM, LOW = "elite", "high", "medium", "low"
FAILED = {Status.FAILED, Status.ROLLED_BACK}


def frequency_band(per_day: float) -> str:
    """Elite: on demand (daily or more); high: daily to weekly; medium: weekly to monthly."""
    if per_day >= 1:
        return ELITE
    if per_day >= 1 / 7:
        return HIGH
    if per_day >= 1 / 30:
        return MEDIUM
    return LOW


def lead_time_band(value: timedelta) -> str:
    return ELITE if value < DAY else HIGH if value < WEEK else MEDIUM if value < MONTH else LOW


def failure_rate_band(percent: float) -> str:
    return ELITE if percent <= 5 else HIGH if percent <= 10 else MEDIUM if percent <= 15 else LOW


def restore_band(value: timedelta) -> str:
    return ELITE if value < HOUR else HIGH if value < DAY else MEDIUM if value < WEEK else LOW


@dataclass
class Bucket:
    """One day or week of the range."""

    start: date
    deployments: int = 0  # successful rollouts of a change
    rollouts: int = 0  # rollouts of a change: succeeded, failed or rolled back
    failures: int = 0
    lead_times: list[timedelta] = field(default_factory=list)
    restores: list[timedelta] = field(default_factory=list)

    @property
    def lead_time(self) -> timedelta | None:
        return _median(self.lead_times)

    @property
    def restore(self) -> timedelta | None:
        return _median(self.restores)

    @property
    def failure_rate(self) -> float | None:
        return 100 * self.failures / self.rollouts if self.rollouts else None


@dataclass
class Metric:
    key: str
    name: str
    unit: str  # of the series (the chart, the table, the CSV column)
    summary: str  # the headline value, or "no data"
    band: str | None
    series: list[float | None]
    note: str = ""


@dataclass
class Insights:
    environment: Environment
    application: str
    days: int
    by: str  # "day" or "week"
    start: datetime
    end: datetime
    buckets: list[Bucket]
    metrics: list[Metric]
    rollouts: int
    unrestored: int


def _median(values: list[timedelta]) -> timedelta | None:
    return statistics.median(values) if values else None


def _times(values: list[timedelta | None]) -> tuple[str, list[float | None]]:
    """A series of medians in minutes when every one is under an hour (a 2-minute lead
    time would read "0.0" in hours and draw no bar), else in hours."""
    unit = HOUR if any(v is not None and v >= HOUR for v in values) else timedelta(minutes=1)
    name = "hours, median" if unit == HOUR else "minutes, median"
    return name, [None if v is None else round(v / unit, 1) for v in values]


def _duration(value: timedelta) -> str:
    if value < HOUR:
        return f"{value / timedelta(minutes=1):.0f} min"
    if value < 2 * DAY:
        return f"{value / HOUR:.1f} h"
    return f"{value / DAY:.1f} days"


def rollouts(environment: Environment, start: datetime, end: datetime, application: str = "") -> Any:
    """Finished runs that rolled out a release: succeeded, rolled back, or failed once the
    rollout stage had started (a failed build never reached the environment)."""
    rollout_started = Stage.objects.filter(
        deployment=OuterRef("pk"), name="rollout", started_at__isnull=False
    ).exclude(status=StageStatus.PENDING)
    qs = Deployment.objects.filter(
        environment=environment, finished_at__gte=start, finished_at__lte=end
    ).filter(
        Q(status__in=[Status.SUCCEEDED, Status.ROLLED_BACK])
        | Q(Exists(rollout_started), status=Status.FAILED)
    )
    if application:
        qs = qs.filter(repository__name=application)
    return qs.order_by("finished_at", "id").values_list(
        "repository_id", "status", "trigger", "finished_at", "committed_at"
    )


def dora_metrics(
    environment: Environment, *, days: int = DEFAULT_RANGE, application: str = "", now: datetime | None = None
) -> Insights:
    """The four metrics over the last `days` local calendar days (today included), in one query."""
    now = now or timezone.now()
    today = timezone.localtime(now).date()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    by = "week" if days > 30 else "day"
    width = 7 if by == "week" else 1
    buckets = [Bucket(first + timedelta(days=d)) for d in range(0, days, width)]

    # Where each bucket starts, as an aware instant (local midnight): a row finds its
    # bucket by bisection, not by converting every timestamp to local time.
    starts = [timezone.make_aware(datetime.combine(b.start, time.min)) for b in buckets]

    def bucket_of(at: datetime) -> Bucket:
        return buckets[max(bisect_right(starts, at) - 1, 0)]

    outage: dict[int, datetime] = {}  # per application: when its open failure began
    total = 0
    for repository_id, status, trigger, finished_at, committed_at in rollouts(
        environment, start, now, application
    ):
        bucket = bucket_of(finished_at)
        change = trigger != Trigger.ROLLBACK  # a rollback ships no new change
        if status == Status.SUCCEEDED:
            if repository_id in outage:
                began = outage.pop(repository_id)
                bucket_of(began).restores.append(finished_at - began)
            if change:
                bucket.deployments += 1
                if committed_at is not None:
                    bucket.lead_times.append(finished_at - committed_at)
        elif repository_id not in outage:
            outage[repository_id] = finished_at
        if change:
            total += 1
            bucket.rollouts += 1
            bucket.failures += status in FAILED
    metrics = _metrics(buckets, days, by, total, len(outage))
    return Insights(environment, application, days, by, start, now, buckets, metrics, total, len(outage))


def _metrics(buckets: list[Bucket], days: int, by: str, total: int, unrestored: int) -> list[Metric]:
    succeeded = sum(b.deployments for b in buckets)
    failures = sum(b.failures for b in buckets)
    lead = _median([t for b in buckets for t in b.lead_times])
    restore = _median([t for b in buckets for t in b.restores])
    per_day = succeeded / days

    def summary(value: Any, text: Callable[[Any], str], band: Callable[[Any], str]) -> tuple[str, str | None]:
        return ("no data", None) if value is None or not total else (text(value), band(value))

    freq_text = f"{per_day:.1f} per day" if per_day >= 1 else f"{per_day * 7:.1f} per week"
    lead_unit, lead_series = _times([b.lead_time for b in buckets])
    restore_unit, restore_series = _times([b.restore for b in buckets])
    return [
        Metric(
            "deployment_frequency",
            "Deployment frequency",
            f"successful rollouts per {by}",
            *summary(per_day, lambda _: freq_text, frequency_band),
            series=[float(b.deployments) if total else None for b in buckets],
        ),
        Metric(
            "lead_time",
            "Lead time for changes",
            lead_unit,
            *summary(lead, lambda v: f"{_duration(v)} (median)", lead_time_band),
            series=lead_series,
        ),
        Metric(
            "change_failure_rate",
            "Change failure rate",
            "% of rollouts",
            *summary(
                100 * failures / total if total else None,
                lambda v: f"{v:.1f}% ({failures} of {total})",
                failure_rate_band,
            ),
            series=[None if b.failure_rate is None else round(b.failure_rate, 1) for b in buckets],
        ),
        Metric(
            "time_to_restore",
            "Time to restore",
            restore_unit,
            *summary(restore, lambda v: f"{_duration(v)} (median)", restore_band),
            series=restore_series,
            note=f"{unrestored} application(s) not restored yet" if unrestored else "",
        ),
    ]
