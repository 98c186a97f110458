#!/usr/bin/env python3
"""Who listens on a loopback TCP port: prints "PID COMMAND" (or "unknown process"), or nothing.

    scripts/port_owner.py PORT

Used by services.sh to tell its own service from another program that already holds
the port. Runs with any python3: deployments/pipeline/ports.py is plain Python.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.pipeline.ports import listeners  # noqa: E402


def main() -> int:
    found = listeners(int(sys.argv[1]))
    if found is not None:
        print(f"{found[0][0]} {found[0][1]}" if found else "unknown process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
