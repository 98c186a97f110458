"""Who listens on a local TCP port, read from /proc (no ss or lsof needed).

Used by the Docker target to tell its own container from another program on the
port it deploys to, and by scripts/services.sh (through scripts/port_owner.py).
"""

from __future__ import annotations

import os

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


def _owners(inodes: set[str]) -> list[tuple[int, str]]:
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


def listeners(port: int) -> list[tuple[int, str]] | None:
    """(pid, command line) of each process listening on `port`; None when nothing listens
    (an empty list: something listens, but its process cannot be seen from here)."""
    inodes = listening_inodes(port)
    return _owners(inodes) if inodes else None


def ancestors(pid: int) -> set[int]:
    """`pid` and its parents up to init, from /proc/PID/stat."""
    chain: set[int] = set()
    while pid > 0 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain
