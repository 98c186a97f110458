"""Worker write → browser-like client: how long a log line takes from `LogWriter.line()`
to an SSE reader, and how many lines per second the path carries.

The server (uvicorn, pipeline_ui.asgi) runs in a thread of this process; the writer is
this process's main thread, as a worker's build thread would be; the reader is a
separate process (bench/sse_client.py), as a browser is.

    .venv/bin/python -m bench.log_latency [--lines 2000] [--interval-ms 2] [--burst 50000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import (
    SseReaders,
    login_cookie,
    ms,
    paced,
    setup_django,
    streaming_deployment,
)
from bench.report import percentile, table, write_section
from tests.live import serve_asgi as asgi_server


def _latency_run(base: str, cookie: str, deployment: Any, lines: int, interval: float, query: str) -> dict:
    from deployments.logs import LogWriter

    readers = SseReaders(f"{base}/deployments/{deployment.pk}/events{query}", cookie, timeout=60)
    readers.wait_ready()
    time.sleep(0.3)  # let the view reach its blocking XREAD, so we time the live path
    with LogWriter(deployment.pk) as writer:
        paced(
            lines,
            interval,
            lambda i: writer.line(f"step output BENCH#{i}@{time.monotonic_ns()}", stage="build"),
        )
        writer.line("BENCH-END")
    client = readers.result()["clients"][0]
    latencies = client.get("latencies_ns", [])
    return {
        "received": len(latencies),
        "p50": percentile(latencies, 50),
        "p90": percentile(latencies, 90),
        "p99": percentile(latencies, 99),
        "max": max(latencies, default=float("nan")),
    }


def _throughput_run(base: str, cookie: str, deployment: Any, lines: int) -> dict:
    from deployments.logs import LogWriter
    from deployments.models import LogLine

    readers = SseReaders(f"{base}/deployments/{deployment.pk}/events", cookie, timeout=120)
    readers.wait_ready()
    time.sleep(0.3)
    start = time.monotonic_ns()
    with LogWriter(deployment.pk) as writer:
        for i in range(lines):
            writer.line(f"step output BENCH#{i}@{time.monotonic_ns()}", stage="build")
        written = time.monotonic_ns()
        writer.line("BENCH-END")
    stored_at = time.monotonic_ns()  # close() returns once every line is in the database
    client = readers.result()["clients"][0]
    received = len(client.get("latencies_ns", []))
    stored = LogLine.objects.filter(deployment=deployment).count() - 1  # minus the end marker
    return {
        "lines": lines,
        "xadd_per_s": lines / ((written - start) / 1e9),
        "stored": stored,
        "stored_per_s": stored / ((stored_at - start) / 1e9),
        "received": received,
        "received_per_s": received / ((client["last_ns"] - start) / 1e9) if received else 0.0,
        "p50": percentile(client.get("latencies_ns", []), 50),
        "p99": percentile(client.get("latencies_ns", []), 99),
    }


def _writer_alone(deployment: Any, lines: int) -> dict:
    from deployments.logs import LogWriter

    start = time.monotonic_ns()
    with LogWriter(deployment.pk) as writer:
        for i in range(lines):
            writer.line(f"step output BENCH#{i}@{time.monotonic_ns()}", stage="build")
        written = time.monotonic_ns()
    return {"lines": lines, "xadd_per_s": lines / ((written - start) / 1e9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50_000)
    args = parser.parse_args()
    setup_django("log-latency")
    from django.conf import settings

    interval = args.interval_ms / 1000
    first = streaming_deployment("bench-logs")  # also makes the user the reader logs in as

    with asgi_server() as base:
        cookie = login_cookie(base, "dev")
        html = _latency_run(base, cookie, first, args.lines, interval, "")
        print(f"html: {html}")
        text = _latency_run(
            base, cookie, streaming_deployment("bench-logs"), args.lines, interval, "?format=text"
        )
        print(f"text: {text}")
        burst = _throughput_run(base, cookie, streaming_deployment("bench-logs"), args.burst)
        print(f"burst: {burst}")
        alone = _writer_alone(streaming_deployment("bench-logs"), args.burst // 5)
        print(f"writer alone: {alone}")

    rows = [
        [name, f"{r['received']}/{args.lines}", ms(r["p50"]), ms(r["p90"]), ms(r["p99"]), ms(r["max"])]
        for name, r in (("HTML fragments (what the page uses)", html), ("`?format=text`", text))
    ]
    throughput = table(
        ["", "lines/s"],
        [
            ["XADD by the writer, no reader connected", f"{alone['xadd_per_s']:,.0f}"],
            ["XADD by the writer, one reader", f"{burst['xadd_per_s']:,.0f}"],
            [
                f"stored in the database ({burst['stored']:,} rows, SQLite WAL)",
                f"{burst['stored_per_s']:,.0f}",
            ],
            [f"received by the reader ({burst['received']:,} lines)", f"{burst['received_per_s']:,.0f}"],
        ],
    )
    latency = table(["Stream", "Lines received", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows)
    markdown = f"""
## Log latency: worker write → browser-like client

`bench/log_latency.py`. One SSE reader (httpx, in its own process) on
`/deployments/<id>/events` of a running deployment, logged in through the login form;
uvicorn serves `pipeline_ui.asgi` from a thread of the benchmark process. The main thread
writes {args.lines} lines with `LogWriter` at one line per {args.interval_ms:g} ms; each
line carries the `CLOCK_MONOTONIC` time it was written, the reader subtracts it from the
time it parsed the line.

{latency}

Throughput: {burst["lines"]:,} lines written as fast as one thread can (`LogWriter.line()`:
one XADD per line, a batched insert every 200 lines), with one reader on the stream, and
{alone["lines"]:,} with none (the server thread then has nothing to render):

{throughput}

Storing is part of `line()` (every 200th call inserts the batch), so the stored rate is
the writer's rate; the reader kept up with it. With a reader connected the writer slows
down, most likely because the server thread rendering the stream shares this process's GIL.

During the burst a line waited p50 {ms(burst["p50"])} ms / p99 {ms(burst["p99"])} ms for the
reader (queueing behind the burst, not the idle latency above). The stream keeps the
newest {settings.LOG_STREAM_MAXLEN:,} entries (`SHIPMATE_LOG_STREAM_MAXLEN`); a reader that
falls further behind than that skips lines live and finds them in the database on reload.
"""
    write_section("log_latency", markdown)


if __name__ == "__main__":
    main()
