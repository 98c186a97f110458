"""Reading a 1M-line log on PostgreSQL: a `history()` page in the middle (time and
plan), and the raw download (`/deployments/<id>/log.txt`) through uvicorn in a process
of its own: wall time and the server's peak RSS.

    .venv/bin/python -m bench.log_history [--lines 1000000]

The log is inserted with one INSERT … SELECT generate_series (the writer's speed is
bench/log_ingest.py's business). PostgreSQL: a database of its own on the test server,
dropped at the end; Redis database 7.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.log_pg import ROOT, bench_env, drop_database, setup_django
from bench.report import table, write_section
from tests.live import free_port

NAME = "loghist"


def _make_log(lines: int) -> Any:
    from django.db import connection

    from bench.common import make_user
    from deployments import permissions
    from deployments.models import Deployment, Environment, Repository, Status

    dev = make_user("dev", permissions.DEVELOPERS)
    repo = Repository.objects.create(name="bench-history", image_name="bench/history")
    env = Environment.objects.create(name="bench-history")
    deployment = Deployment.objects.create(
        repository=repo, environment=env, ref="main", status=Status.SUCCEEDED, requested_by=dev
    )
    with connection.cursor() as cursor:
        # 1,000 lines per millisecond, like a flood through one XADD batch.
        cursor.execute(
            "INSERT INTO deployments_logline (deployment_id, entry_ms, entry_seq, stage, text) "
            "SELECT %s, 1700000000000 + i / 1000, i %% 1000, 'build', "
            "'step ' || i || ': compiling module_' || (i %% 977) || '.py ok' FROM generate_series(0, %s) AS i",
            [deployment.pk, lines - 1],
        )
        cursor.execute("ANALYZE deployments_logline")
    return deployment


def _middle_page(deployment: Any, lines: int) -> dict[str, Any]:
    from django.db import connection

    from deployments.logs.history import _after, history

    middle = f"{1700000000000 + lines // 2000}-500"
    times = []
    for _ in range(7):
        start = time.perf_counter()
        page = history(deployment, after=middle, limit=500)
        times.append(time.perf_counter() - start)
    ms, seq = (int(x) for x in middle.split("-"))
    query = deployment.log_lines.filter(_after((ms, seq))).order_by("entry_ms", "entry_seq")[:500]
    plan = query.explain(analyze=True)
    sql, params = query.query.sql_with_params()
    # The query as it was (the OR alone), for the before/after plan.
    old = sql.replace('"deployments_logline"."entry_ms" >= %s AND ', "", 1)
    old_params = params[:1] + params[2:]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ANALYZE {old}", old_params)
        old_plan = "\n".join(row[0] for row in cursor.fetchall())
        start = time.perf_counter()
        cursor.execute(old, old_params)
        cursor.fetchall()
        old_time = time.perf_counter() - start
    return {
        "median_s": statistics.median(times),
        "rows": len(page),
        "plan": plan,
        "old_plan": old_plan,
        "old_s": old_time,
    }


def _in_process_text(deployment: Any) -> dict[str, Any]:
    from deployments.logs import log_text

    start = time.perf_counter()
    size = sum(len(chunk) for chunk in log_text(deployment))
    return {"wall_s": time.perf_counter() - start, "chars": size}


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _download(deployment: Any) -> dict[str, Any]:
    import httpx

    from bench.common import login_cookie

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "pipeline_ui.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        + ["--log-level", "warning", "--lifespan", "off"],
        env=bench_env(NAME),
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/login/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)
        cookie = login_cookie(base, "dev")
        rss_before = _peak_rss_kib(server.pid)
        received, lines = 0, 0
        start = time.perf_counter()
        first_byte = None
        with httpx.stream(
            "GET", f"{base}/deployments/{deployment.pk}/log.txt", headers={"Cookie": cookie}, timeout=120
        ) as response:
            for chunk in response.iter_bytes():
                first_byte = first_byte or time.perf_counter() - start
                received += len(chunk)
                lines += chunk.count(b"\n")
        wall = time.perf_counter() - start
        return {
            "status": response.status_code,
            "wall_s": wall,
            "first_byte_s": first_byte or float("nan"),
            "bytes": received,
            "lines": lines,
            "rss_before_mib": rss_before / 1024,
            "rss_peak_mib": _peak_rss_kib(server.pid) / 1024,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    setup_django(NAME, fresh=True)
    try:
        deployment = _make_log(args.lines)
        page = _middle_page(deployment, args.lines)
        print({k: v for k, v in page.items() if "plan" not in k})
        print(page["plan"])
        download = _download(deployment)
        print(download)
        text = _in_process_text(deployment)
        print(text)
    finally:
        drop_database(NAME)

    results = table(
        ["", "result"],
        [
            [
                "`history(after=<middle>, limit=500)`, median of 7",
                f"{page['median_s'] * 1000:.1f} ms ({page['rows']} rows)",
            ],
            ["the same page with the old bound (OR only)", f"{page['old_s'] * 1000:.1f} ms"],
            [
                f"raw download, `GET /deployments/<id>/log.txt` ({download['lines']:,} lines, "
                f"{download['bytes'] / 1e6:.1f} MB, HTTP {download['status']})",
                f"{download['wall_s']:.1f} s, first byte after {download['first_byte_s'] * 1000:.0f} ms",
            ],
            [
                "uvicorn's peak RSS (VmHWM) before → after the download",
                f"{download['rss_before_mib']:.0f} → {download['rss_peak_mib']:.0f} MiB",
            ],
            ["`logs.log_text()` in-process (keyset pages of 20,000 tuples)", f"{text['wall_s']:.1f} s"],
        ],
    )
    write_section(
        "log_history",
        f"""
## Reading a {args.lines:,}-line log on PostgreSQL

`bench/log_history.py` (`scripts/bench.sh log_history`): {args.lines:,} rows in
`deployments_logline` for one deployment; the download goes through uvicorn serving
`pipeline_ui.asgi` in a process of its own, logged in as a developer.

{results}

Plan of the middle page now (`EXPLAIN ANALYZE`):

```
{page["plan"]}
```

Plan with the old bound (`entry_ms > X OR (entry_ms = X AND entry_seq > Y)` only):

```
{page["old_plan"]}
```
""",
    )


if __name__ == "__main__":
    main()
