#!/usr/bin/env python3
"""Who listens on a loopback TCP port: prints "PID COMMAND" (or "unknown process"), or nothing.

    scripts/port_owner.py PORT

Used by services.sh to tell its own service from another program that already holds
the port. Reads /proc directly, so it needs neither ss nor lsof.
"""

from __future__ import annotations

import os
import sys

LISTEN = "0A"


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            continue
    return inodes


def owners(inodes: set[str]) -> list[tuple[int, str]]:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # the process ended, or its fds are not ours to read
        found.append((int(pid), command[:120]))
    return sorted(found)


def main() -> int:
    port = int(sys.argv[1])
    inodes = listening_inodes(port)
    if not inodes:
        return 0
    found = owners(inodes)
    print(f"{found[0][0]} {found[0][1]}" if found else "unknown process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
