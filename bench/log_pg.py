"""What the log benchmarks share: Django on a PostgreSQL database of their own (on the
test server, `TEST_POSTGRES_URL`), Redis database 7, and helper processes (the writer,
a follower) started with `python -m bench.log_pg ROLE …`.

    python -m bench.log_pg writer DEPLOYMENT_ID LINES [--secrets N] [--width CHARS]
    python -m bench.log_pg follower STREAM_KEY LINES [--timeout S]

Each helper prints one JSON object when done.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_REDIS_DB = 7
END = "BENCH-END"


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def bench_env(name: str) -> dict[str, str]:
    """The environment of this benchmark and its helper processes."""
    for required in ("REDIS_URL", "TEST_POSTGRES_URL"):
        if not os.environ.get(required):
            raise SystemExit(f"{required} is not set: run `make bench`, or source .state/test/services.env")
    redis_url = _with_path(os.environ["REDIS_URL"], f"/{BENCH_REDIS_DB}")
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _with_path(os.environ["TEST_POSTGRES_URL"], f"/shipmate_bench_{name}"),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }


def setup_django(name: str, *, fresh: bool) -> None:
    """Django on the benchmark's PostgreSQL database; `fresh` drops, creates and migrates it."""
    env = bench_env(name)
    os.environ.update(env)
    if fresh:
        import psycopg

        database = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
        with psycopg.connect(os.environ["TEST_POSTGRES_URL"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if fresh:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from deployments.logs import get_redis

        client = get_redis()
        stale = list(client.scan_iter(match="shipmate:log:*", count=1000))
        if stale:
            client.delete(*stale)


def drop_database(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    database = urlsplit(bench_env(name)["DATABASE_URL"]).path.lstrip("/")
    with psycopg.connect(os.environ["TEST_POSTGRES_URL"], autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def helper(name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.log_pg", *args, "--bench", name],
        env=bench_env(name),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"helper {process.args} failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def bench_line(i: int, width: int) -> str:
    text = f"step {i:>8}: compiling module_{i % 977}.py ok"
    return (text + " " + "x" * width)[:width] if width > len(text) else text


SECRETS = [f"secret-{n}-T0k3n-{'q' * n}" for n in range(10)]


def _writer(args: argparse.Namespace) -> None:
    setup_django(args.bench, fresh=False)
    from deployments.logs import LogWriter

    width = args.width
    lines = [bench_line(i, width) for i in range(min(args.lines, 10_000))]
    start = time.perf_counter()
    with LogWriter(args.deployment, secrets=SECRETS[: args.secrets], max_lines=args.lines + 1) as writer:
        for i in range(args.lines):
            writer.line(lines[i % len(lines)], stage="build")
        written = time.perf_counter()
        writer.line(END, stage="build")
    done = time.perf_counter()
    print(json.dumps({"written_s": written - start, "stored_s": done - start, "dropped": writer.dropped}))


def _follower(args: argparse.Namespace) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    print(json.dumps({"ready": True}), flush=True)
    last, received, deadline = "0-0", 0, time.monotonic() + args.timeout
    first_ns = last_ns = 0
    while time.monotonic() < deadline:
        reply = client.xread({args.key: last}, block=1000, count=2000)
        if not reply:
            continue
        entries = reply[0][1]
        last = entries[-1][0]
        now = time.monotonic_ns()
        first_ns = first_ns or now
        last_ns = now
        received += sum(1 for _, fields in entries if fields.get("type") == "line")
        if entries[-1][1].get("text") == END:
            break
    print(json.dumps({"received": received, "span_s": (last_ns - first_ns) / 1e9}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["writer", "follower"])
    parser.add_argument("target")
    parser.add_argument("lines", type=int)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--secrets", type=int, default=0)
    parser.add_argument("--width", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    if args.role == "writer":
        args.deployment = int(args.target)
        _writer(args)
    else:
        args.key = args.target
        _follower(args)


if __name__ == "__main__":
    main()
