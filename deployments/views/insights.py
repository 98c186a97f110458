"""The Insights page: DORA metrics as server-drawn SVG charts, tables and CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from .. import selectors
from ..models import Repository
from ..selectors import insights as dora

# Chart geometry, in SVG user units (the SVG scales to its box).
WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 360, 140, 36, 10, 20


class InsightsFilter(forms.Form):
    environment = forms.ChoiceField(required=False)
    application = forms.ChoiceField(required=False)
    days = forms.TypedChoiceField(
        choices=[(d, f"{d} days") for d in dora.RANGES], coerce=int, required=False, empty_value=None
    )

    def __init__(self, data: Any, *, environments: list[str], applications: list[str]) -> None:
        super().__init__(data)
        self.fields["environment"].choices = [(n, n) for n in environments]
        self.fields["application"].choices = [("", "All applications")] + [(n, n) for n in applications]


@dataclass
class Bar:
    label: str
    value: float
    text: str
    x: float
    y: float
    width: float
    height: float


def chart(series: list[float | None], labels: list[str]) -> dict[str, Any]:
    top = max((v for v in series if v is not None), default=0) or 1
    step = (WIDTH - LEFT) / max(len(series), 1)
    plot = HEIGHT - TOP - BOTTOM
    bars = [
        Bar(label, value, text(value), LEFT + i * step + step * 0.15, TOP + plot - plot * value / top,
            step * 0.7, plot * value / top)
        for i, (label, value) in enumerate(zip(labels, series, strict=True))
        if value is not None
    ]  # fmt: skip
    return {"bars": bars, "top": text(top), "width": WIDTH, "height": HEIGHT, "left": LEFT,
            "base": TOP + plot, "middle": (WIDTH + LEFT) // 2, "first": labels[0], "last": labels[-1]}  # fmt: skip


def text(value: float | None) -> str:
    """How a number reads in the table, the chart's titles and the CSV alike."""
    if value is None:
        return ""
    return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"


@login_required
def insights(request: HttpRequest) -> HttpResponse:
    envs = selectors.visible_environments(request.user)
    apps = list(
        Repository.objects.filter(placements__environment__in=envs).distinct().values_list("name", flat=True)
    )
    form = InsightsFilter(request.GET, environments=[e.name for e in envs], applications=apps)
    if not form.is_valid():
        raise Http404("No such environment, application or range.")
    if not envs:
        return render(request, "deployments/insights.html", {"form": form, "data": None})
    name = form.cleaned_data["environment"] or envs[-1].name  # the last in lifecycle order
    data = dora.dora_metrics(
        next(e for e in envs if e.name == name),
        days=form.cleaned_data["days"] or dora.DEFAULT_RANGE,
        application=form.cleaned_data["application"],
    )
    if request.GET.get("format") == "csv":
        return insights_csv(data)
    labels = [b.start.isoformat() for b in data.buckets]
    charts = [
        {"metric": m, "chart": chart(m.series, labels), "rows": zip(labels, map(text, m.series), strict=True)}
        for m in data.metrics
    ]
    context = {"form": form, "data": data, "charts": charts, "ranges": dora.RANGES}
    return render(request, "deployments/insights.html", context)


def insights_csv(data: dora.Insights) -> HttpResponse:
    name = f"insights-{data.environment.name}-{data.application or 'all'}-{data.days}d.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    writer = csv.writer(response)
    writer.writerow([data.by, *(f"{m.key} ({m.unit})" for m in data.metrics)])
    for i, bucket in enumerate(data.buckets):
        writer.writerow([bucket.start.isoformat(), *(text(m.series[i]) for m in data.metrics)])
    return response
