"""The deployment page's pipeline timeline: one bar per stage on the run's time axis.

The page draws it as of the request (so it reads without JavaScript); js/timeline.js
keeps it growing from the same numbers while the run goes on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import Deployment, Stage, StageStatus


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass(frozen=True)
class TimelineBar:
    name: str
    status: str
    start_ms: int | None
    end_ms: int | None  # None while the stage runs (or never ran)
    left: float  # percent of the axis
    width: float
    duration: timedelta | None


@dataclass(frozen=True)
class Timeline:
    start_ms: int
    end_ms: int | None  # None while the run goes on
    now_ms: int
    total: timedelta
    bars: list[TimelineBar]


def deployment_timeline(deployment: Deployment, stages: Iterable[Stage], *, now: datetime) -> Timeline | None:
    """None before the run started. A stage that is running reaches up to `now`; the
    axis runs from the run's start to its end (or `now`)."""
    if deployment.started_at is None:
        return None
    stages = list(stages)
    start = min([deployment.started_at, *(s.started_at for s in stages if s.started_at)])
    end = deployment.finished_at if deployment.is_finished else None
    horizon = max(end or now, start)
    span = max((horizon - start).total_seconds(), 0.001)
    bars = []
    for stage in stages:
        if stage.started_at is None:
            bars.append(TimelineBar(stage.name, stage.status, None, None, 0.0, 0.0, None))
            continue
        running = stage.finished_at is None and stage.status == StageStatus.RUNNING and end is None
        stop = stage.finished_at or (horizon if running else stage.started_at)
        stop = max(min(stop, horizon), stage.started_at)
        bars.append(
            TimelineBar(
                name=stage.name,
                status=stage.status,
                start_ms=_ms(stage.started_at),
                end_ms=None if running else _ms(stop),
                left=round((stage.started_at - start).total_seconds() / span * 100, 3),
                width=round((stop - stage.started_at).total_seconds() / span * 100, 3),
                duration=stop - stage.started_at,
            )
        )
    return Timeline(
        start_ms=_ms(start),
        end_ms=_ms(end) if end else None,
        now_ms=_ms(now),
        total=horizon - start,
        bars=bars,
    )
