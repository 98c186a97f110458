"""Browser-like SSE readers in a process of their own (as a browser would be).

Run by the benchmarks, not by hand:

    python -m bench.sse_client URL COOKIE --clients 1 --timeout 60

Prints `ready` once every client has its stream open, then, when each has seen the
end marker (or the timeout passed), one JSON object with what each client received.
Lines are matched by `BENCH#<seq>@<monotonic ns when written>`; CLOCK_MONOTONIC is
system-wide on Linux, so the writer's clock and ours agree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

import httpx

LINE = re.compile(r"BENCH#(\d+)@(\d+)")
END = "BENCH-END"


async def _read(client: httpx.AsyncClient, url: str, opened: asyncio.Event, result: dict[str, Any]) -> None:
    # Kept in `result` as they come, so a client cut off by the timeout still reports.
    latencies: list[int] = result.setdefault("latencies_ns", [])
    seen: set[int] = set()
    async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
        result["status"] = response.status_code
        opened.set()
        async for raw in response.aiter_lines():
            if not raw.startswith("data:"):
                continue
            now = time.monotonic_ns()
            # The page's format carries a batch of lines (a JSON array) per event.
            for match in LINE.finditer(raw):
                seq = int(match[1])
                if seq in seen:
                    result["duplicates"] = result.get("duplicates", 0) + 1
                    continue
                seen.add(seq)
                latencies.append(now - int(match[2]))
                result["last_ns"] = now
            if END in raw:
                break
    result["ended"] = True


async def main(url: str, cookie: str, clients: int, timeout: float) -> dict[str, Any]:
    results: list[dict[str, Any]] = [{} for _ in range(clients)]
    opened = [asyncio.Event() for _ in range(clients)]
    limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=clients + 5)
    # No read timeout: a quiet stream only sends a keepalive every 10 s.
    async with httpx.AsyncClient(
        headers={"Cookie": cookie}, limits=limits, timeout=httpx.Timeout(10, read=None)
    ) as client:
        tasks = [asyncio.create_task(_read(client, url, opened[i], results[i])) for i in range(clients)]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), timeout=30)
        print("ready", flush=True)
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                print(f"client failed: {task.exception()!r}", file=sys.stderr)
    return {"clients": results, "timed_out": len(pending), "cpu_s": time.process_time()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("cookie")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.url, args.cookie, args.clients, args.timeout))), flush=True)
