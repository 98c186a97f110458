"""Writes one benchmark's section into docs/PERFORMANCE.md, between its own markers.

Each section is `<!-- bench:NAME -->` … `<!-- /bench:NAME -->`; a rerun replaces
only its own section, so benchmarks can run one at a time and in any order.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"


def machine_facts() -> str:
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    cpu = _cpu_model()
    return (
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on {os.cpu_count()} CPUs"
        f"{f' ({cpu})' if cpu else ''}, load average {load} (1/5/15 min) at the end of the run, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}."
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def write_section(name: str, markdown: str, path: Path = PERFORMANCE_MD) -> None:
    """Replace (or append) the section NAME with `markdown` plus the machine facts."""
    if not re.fullmatch(r"[\w-]+", name):
        raise ValueError(f"section name {name!r} must be a word")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    body = f"{start}\n{markdown.strip()}\n\n_{machine_facts()}_\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"{path.name}: wrote section {name}", file=sys.stderr)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile; `values` need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
