"""The whole path of a flood of test output: container log stream → test stage →
LogWriter → Redis and the database, through a real deployment, repeated, because the
loss this guards against was intermittent (7 of 31 runs at 200,000 lines)."""

from __future__ import annotations

import pytest

from deployments import services
from deployments.execution import execute
from deployments.models import LogLine, Status

LINES = 100_000


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(4))
def test_every_line_of_a_flood_of_test_output_is_stored_in_order(
    dev, repository, dev_env, docker_engine, attempt
):
    repository.test_command = f"seq 1 {LINES}"
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")

    status = execute(deployment.pk, worker="flood")

    deployment.refresh_from_db()
    assert status == Status.SUCCEEDED, deployment.error
    texts = list(
        LogLine.objects.filter(deployment=deployment, stage="test")
        .order_by("entry_ms", "entry_seq")
        .values_list("text", flat=True)
    )
    numbers = [t for t in texts if t.isdigit()]
    assert len(numbers) == LINES, f"{LINES - len(numbers)} line(s) missing"
    assert numbers == [str(i) for i in range(1, LINES + 1)]
    assert texts[-1] == f"Tests passed ({LINES} line(s) of output)"
