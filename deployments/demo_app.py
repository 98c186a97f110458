"""A tiny demo application in a local git repository, for tests, benchmarks and first runs.

The image is built FROM scratch with the host's static busybox, so it needs no registry
and no network. Recommended repository settings: Dockerfile "Dockerfile", context ".",
test command "sh /app/test.sh", health path "/healthz". The container serves on
127.0.0.1:$PORT (default 8080), meant for network_mode "host".
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
# Applet links give the test command and debugging a normal shell environment.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
COPY test.sh /app/test.sh
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "-c", "exec busybox httpd -f -p 127.0.0.1:${{{port_env}:-8080}} -h /www"]
"""

TEST_SH = """\
#!/bin/sh
# The demo's test suite: the page to serve must be in the image.
set -e
test -f /www/index.html
grep -q "Hello from Shipmate demo" /www/index.html
test "$(cat /www/healthz)" = "ok"
echo "all demo tests passed"
"""

INDEX_HTML = """\
<!doctype html>
<html><head><meta charset="utf-8"><title>Shipmate demo</title></head>
<body><h1>Hello from Shipmate demo</h1><p>Version {version}</p></body></html>
"""


def _git(path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    result = subprocess.run(
        ["git", "-C", str(path), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _write(path: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def add_commit(path: Path, message: str, files: dict[str, str]) -> str:
    """Write `files` (repository-relative path -> text), commit them on the current branch, return the SHA."""
    _write(path, files)
    _git(path, "add", "--", *files)
    _git(path, "commit", "-q", "-m", message)
    return _git(path, "rev-parse", "HEAD")


def create_demo_repo(path: Path, *, port_env: str = "PORT") -> Path:
    """Create the demo repository at `path`: two commits on main, tag v1.0 on the first."""
    if not BUSYBOX.is_file():
        raise RuntimeError("The demo needs a static busybox at /bin/busybox (Debian: busybox-static).")
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "config", "user.name", "Shipmate Demo")
    _git(path, "config", "user.email", "demo@shipmate.invalid")
    _git(path, "config", "commit.gpgsign", "false")
    _git(path, "config", "tag.gpgsign", "false")
    shutil.copy2(BUSYBOX, path / "busybox")
    _write(
        path,
        {
            "Dockerfile": DOCKERFILE.format(port_env=port_env),
            "test.sh": TEST_SH,
            "www/index.html": INDEX_HTML.format(version=1),
            "www/healthz": "ok",
            ".dockerignore": ".git\n",
        },
    )
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "Add the demo web app")
    _git(path, "tag", "-a", "v1.0", "-m", "Version 1.0")
    add_commit(path, "Show version 2 on the home page", {"www/index.html": INDEX_HTML.format(version=2)})
    return path


def create_hello_repo(path: Path) -> Path:
    """A second demo application: the demo with its own page ("Hello from the hello app")
    and a test suite that checks for it. Seeded beside the demo, and used by tests of
    two applications in one environment."""
    create_demo_repo(path)
    add_commit(
        path,
        "Make it the hello app",
        {
            "www/index.html": INDEX_HTML.replace("Shipmate demo", "the hello app").format(version=1),
            "test.sh": TEST_SH.replace("Shipmate demo", "the hello app"),
        },
    )
    return path
