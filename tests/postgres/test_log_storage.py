"""The log on PostgreSQL: COPY takes what SQLite takes (NUL raised DataError before),
and history pages are index range scans, not a filter over the whole log."""

from __future__ import annotations

import pytest
from django.db import connection

from deployments.logs.history import _after, history
from deployments.models import LogLine
from tests.test_log_writer import check_bad_input, deployment, write_bad_input  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.timeout(60)
def test_nul_invalid_utf8_huge_lines_and_markup_are_stored_safely_on_postgresql(deployment):  # noqa: F811
    write_bad_input(deployment)
    check_bad_input(deployment)


def test_a_history_page_after_an_id_is_an_index_range_scan(deployment):  # noqa: F811
    LogLine.objects.bulk_create(
        LogLine(deployment=deployment, entry_ms=1000 + i // 5, entry_seq=i % 5, text=f"line {i}")
        for i in range(20_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE deployments_logline")
    page = (
        LogLine.objects.filter(deployment=deployment)
        .filter(_after((3000, 2)))
        .order_by("entry_ms", "entry_seq")
    )

    plan = page[:500].explain()

    assert "Index Scan using unique_log_entry" in plan
    assert "Index Cond: ((deployment_id = " in plan and "(entry_ms >= 3000)" in plan, plan
    assert [line.text for line in history(deployment, after="3000-2", limit=2)] == [
        "line 10003",
        "line 10004",
    ]
