"""Bad bytes in a build's output never crash the worker or strand a run, on PostgreSQL
(which refuses NUL in text): a whole deployment whose tests print NUL, invalid UTF-8,
other control characters, `<script>` and a 3 MB line ends with its real status, and
every line is stored."""

from __future__ import annotations

import pytest

from deployments import services
from deployments.execution import execute
from deployments.models import LogLine, Status

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NASTY = (
    "sh -c \"printf 'nul:\\\\000:end\\\\n'; printf 'bad utf-8: \\\\377\\\\376 here\\\\n'; "
    "printf 'bell\\\\007 and escape\\\\033[31m red\\\\n'; echo '<script>alert(1)</script>'; "
    "head -c 3000000 /dev/zero | tr '\\\\000' x; echo; echo after the long line\""
)


def test_a_run_whose_tests_print_bad_bytes_succeeds_and_stores_every_line(
    high_ids, private_queue, dev, repository, dev_env, docker_engine
):
    repository.test_command = NASTY
    repository.save()
    deployment = services.deployment_request(user=dev, repository=repository, environment=dev_env, ref="main")

    status = execute(deployment.pk, worker="bad-bytes")

    deployment.refresh_from_db()
    assert status == Status.SUCCEEDED, deployment.error
    texts = list(LogLine.objects.filter(deployment=deployment, stage="test").values_list("text", flat=True))
    assert "nul:\ufffd:end" in texts
    assert any(t.startswith("bad utf-8: ") and t.endswith(" here") and "\ufffd" in t for t in texts)
    assert "<script>alert(1)</script>" in texts
    long = next(t for t in texts if t.startswith("xxxx"))
    assert len(long.encode()) < 70_000 and "cut" in long  # stored, capped with a note
    assert "after the long line" in texts
