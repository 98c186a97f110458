"""Log ingest: lines/s through `LogWriter` (the writer in a process of its own, as a
worker's build is) into Redis and PostgreSQL, with 0 and 1 follower, against plain
Redis baselines measured in the same run; and what masking costs.

    .venv/bin/python -m bench.log_ingest [--lines 1000000] [--single 50000] [--mask-lines 200000]

PostgreSQL: a database of its own on the test server (`TEST_POSTGRES_URL`), dropped at
the end. Redis: database 7. The follower is a process doing what the SSE view does at
the Redis end (XREAD BLOCK on the stream, 2,000 entries per read).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.log_pg import SECRETS, bench_line, drop_database, helper, result, setup_django
from bench.report import table, write_section

NAME = "logs"


def _deployment() -> Any:
    from deployments.models import Deployment, Environment, Repository, Status

    repo, _ = Repository.objects.get_or_create(name="bench-logs", defaults={"image_name": "bench/logs"})
    env, _ = Environment.objects.get_or_create(name="bench-logs")
    return Deployment.objects.create(repository=repo, environment=env, ref="main", status=Status.RUNNING)


def _baseline_pipelined(lines: int) -> float:
    from deployments.logs import get_redis

    client, key = get_redis(), "shipmate:bench:pipelined"
    client.delete(key)
    start = time.perf_counter()
    for first in range(0, lines, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + 1000, lines)):
            pipe.xadd(
                key,
                {"type": "line", "stage": "build", "text": bench_line(i, 60)},
                maxlen=20000,
                approximate=True,
            )
        pipe.execute()
    elapsed = time.perf_counter() - start
    client.delete(key)
    return lines / elapsed


def _baseline_single(lines: int) -> float:
    from deployments.logs import get_redis

    client, key = get_redis(), "shipmate:bench:single"
    client.delete(key)
    start = time.perf_counter()
    for i in range(lines):
        client.xadd(
            key, {"type": "line", "stage": "build", "text": bench_line(i, 60)}, maxlen=20000, approximate=True
        )
    elapsed = time.perf_counter() - start
    client.delete(key)
    return lines / elapsed


def _writer_run(lines: int, *, followers: int, secrets: int = 0) -> dict[str, Any]:
    from deployments.logs import get_redis, stream_key
    from deployments.models import LogLine

    deployment = _deployment()
    key = stream_key(deployment.pk)
    readers = [helper(NAME, "follower", key, str(lines), "--timeout", "120") for _ in range(followers)]
    for reader in readers:
        assert reader.stdout is not None
        reader.stdout.readline()  # ready
    writer = helper(NAME, "writer", str(deployment.pk), str(lines), "--secrets", str(secrets))
    timing = result(writer, timeout=240)
    received = [result(reader, timeout=120)["received"] for reader in readers]
    stored = LogLine.objects.filter(deployment=deployment).count()
    get_redis().delete(key)
    return {**timing, "lines": lines, "stored": stored, "received": received}


def _masking(lines: int, secrets: int) -> float:
    from deployments.logs import Masker

    masker = Masker(SECRETS[:secrets])
    texts = [bench_line(i, 60) for i in range(10_000)]
    start = time.perf_counter()
    for i in range(lines):
        masker(texts[i % 10_000])
    return lines / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=50_000)
    parser.add_argument("--mask-lines", type=int, default=200_000)
    args = parser.parse_args()
    setup_django(NAME, fresh=True)
    try:
        pipelined = _baseline_pipelined(args.lines)
        print(f"pipelined XADD: {pipelined:,.0f} lines/s")
        single = _baseline_single(args.single)
        print(f"one XADD per line: {single:,.0f} lines/s")
        runs = {n: _writer_run(args.lines, followers=n) for n in (0, 1)}
        print(runs)
        masked = {n: _masking(args.mask_lines, n) for n in (0, 1, 10)}
        print(masked)
        secret_run = _writer_run(args.mask_lines, followers=0, secrets=10)
        print(secret_run)
    finally:
        drop_database(NAME)

    def row(label: str, run: dict[str, Any]) -> list[str]:
        return [
            label,
            f"{run['lines'] / run['written_s']:,.0f}",
            f"{run['lines'] / run['stored_s']:,.0f}",
            f"{run['stored_s']:.1f} s",
            f"{run['stored'] - 1:,}",
            ", ".join(f"{n - 1:,}" for n in run["received"]) or "–",
        ]

    ingest = table(
        [
            "",
            "accepted lines/s",
            "stored lines/s",
            "wall time",
            "rows stored",
            "followed live (the rest was trimmed by MAXLEN before it was read)",
        ],
        [
            row(f"LogWriter, {args.lines:,} lines, no follower", runs[0]),
            row(f"LogWriter, {args.lines:,} lines, 1 follower", runs[1]),
            row(f"LogWriter, {args.mask_lines:,} lines, 10 secrets", secret_run),
        ],
    )
    baselines = table(
        ["Baseline (this process, Redis only, no database)", "lines/s", f"time for {args.lines:,} lines"],
        [
            [
                "redis-py pipeline, 1,000 XADDs per round trip",
                f"{pipelined:,.0f}",
                f"{args.lines / pipelined:.1f} s",
            ],
            [f"one XADD per line ({args.single:,} lines)", f"{single:,.0f}", f"{args.lines / single:.1f} s"],
        ],
    )
    masking = table(
        ["Secrets (≈ 10 forms each)", "lines/s masked", "µs per line"],
        [[str(n), f"{rate:,.0f}", f"{1e6 / rate:.2f}"] for n, rate in masked.items()],
    )
    write_section(
        "log_ingest",
        f"""
## Log ingest: LogWriter → Redis Stream + PostgreSQL

`bench/log_ingest.py` (`scripts/bench.sh log_ingest`). The writer is a process of its
own (`python -m bench.log_pg writer`) calling `LogWriter.line()` as fast as it can with
{60}-character lines, then `close()`; "stored" is when `close()` returned, so every line
was in Redis and in PostgreSQL (COPY). The follower is another process reading the
stream with XREAD BLOCK, as the SSE view does; what it misses was trimmed from the
stream (`SHIPMATE_LOG_STREAM_MAXLEN`) before it got there, which the SSE view serves
from the database. PostgreSQL 15 and Redis 7 run on the same machine.

{ingest}

{baselines}

Masking alone (`Masker.__call__`, {args.mask_lines:,} lines of 60 characters, one
regex over every form of every secret):

{masking}
""",
    )


if __name__ == "__main__":
    main()
