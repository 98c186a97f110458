"""Many viewers on one deployment: latency and server memory with 50 open SSE streams.

.venv/bin/python -m bench.sse_fanout [--clients 50] [--lines 2000] [--interval-ms 2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

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


def _rss_mb(field: str = "VmRSS") -> float:
    # uvicorn runs in this process, so its memory is ours.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    args = parser.parse_args()
    setup_django("sse-fanout")
    from deployments.logs import LogWriter

    deployment = streaming_deployment("bench-fanout")
    with asgi_server() as base:
        cookie = login_cookie(base, "dev")
        rss_before = _rss_mb()
        readers = SseReaders(
            f"{base}/deployments/{deployment.pk}/events", cookie, clients=args.clients, timeout=90
        )
        readers.wait_ready()
        time.sleep(0.5)
        rss_open = _rss_mb()
        cpu_start, wall_start = time.process_time(), time.monotonic()
        with LogWriter(deployment.pk) as writer:
            paced(
                args.lines,
                args.interval_ms / 1000,
                lambda i: writer.line(f"step output BENCH#{i}@{time.monotonic_ns()}", stage="build"),
            )
            writer.line("BENCH-END")
        rss_streaming = _rss_mb()
        report = readers.result()
        server_cpu, wall = time.process_time() - cpu_start, time.monotonic() - wall_start
        time.sleep(0.5)
        rss_after = _rss_mb()
    clients = report["clients"]
    latencies = [value for client in clients for value in client.get("latencies_ns", [])]
    per_client_p99 = sorted(percentile(client.get("latencies_ns", []), 99) for client in clients)
    complete = sum(1 for client in clients if len(client.get("latencies_ns", [])) == args.lines)
    cpu = (
        f"While writing and delivering ({wall:.1f} s) the server process used {server_cpu:.1f} s of CPU "
        f"({server_cpu / wall:.0%} of one core) and the reader process {report['cpu_s']:.1f} s, on "
        f"{os.cpu_count()} CPUs. Near 100 % the single server process (one GIL: uvicorn's loop, "
        "the rendering of each line for each stream, and the writer) is the limit, and lines queue."
    )
    print(cpu)
    print(
        f"complete {complete}/{len(clients)}, p50 {ms(percentile(latencies, 50))} ms, "
        f"p99 {ms(percentile(latencies, 99))} ms, rss {rss_before:.1f} → {rss_streaming:.1f} → {rss_after:.1f} MB"
    )

    latency = table(
        ["Clients with every line", "p50 ms", "p90 ms", "p99 ms", "max ms", "worst client's p99 ms"],
        [
            [
                f"{complete}/{len(clients)}",
                ms(percentile(latencies, 50)),
                ms(percentile(latencies, 90)),
                ms(percentile(latencies, 99)),
                ms(max(latencies, default=float("nan"))),
                ms(per_client_p99[-1]),
            ]
        ],
    )
    memory = table(
        ["Before the streams", f"{args.clients} streams open", "After writing", "Streams closed"],
        [[f"{rss_before:.1f} MB", f"{rss_open:.1f} MB", f"{rss_streaming:.1f} MB", f"{rss_after:.1f} MB"]],
    )
    markdown = f"""
## Fan-out: {args.clients} viewers on one deployment

`bench/sse_fanout.py`. {args.clients} SSE streams (httpx, one asyncio process) on one
running deployment, logged in; {args.lines} lines written with `LogWriter` at one per
{args.interval_ms:g} ms, {args.clients * args.lines:,} deliveries in all. Each stream has its
own Redis connection with a blocking XREAD and renders every line itself. Latency is
write → parsed by the reader.

{latency}

{cpu}

Server process memory (VmRSS of the process running uvicorn and the writer):

{memory}
"""
    write_section("sse_fanout", markdown)


if __name__ == "__main__":
    main()
