import csv
import json
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from .. import permissions, selectors
from .common import partial

FIELDS = [
    "created_at",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "commit_sha",
    "image_digest",
    "source_ip",
    "details",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    if not permissions.can_view_audit(request.user):
        raise PermissionDenied
    filters = {key: request.GET.get(key, "") for key in ("actor", "action", "object_type", "q")}
    events = selectors.audit_events(**filters)
    if request.GET.get("format") == "csv":
        return _csv(events)
    context = {"events": events[:300], "filters": filters, "actions": selectors.audit_actions()}
    return render(request, partial(request, "deployments/audit.html", "table"), context)


def _csv(events) -> StreamingHttpResponse:  # type: ignore[no-untyped-def]
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(FIELDS)
        for event in events.iterator(chunk_size=1000):
            yield writer.writerow([_cell(getattr(event, f)) for f in FIELDS])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="shipmate-audit.csv"'
    return response


def _cell(value: object) -> str:
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, default=str)
    elif hasattr(value, "isoformat"):
        text = value.isoformat()
    else:
        text = str(value if value is not None else "")
    # Spreadsheet formula injection: a cell must not start with = + - @.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
