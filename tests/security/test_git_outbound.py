"""git under the outbound guard, against real git servers on loopback: `git http-backend`
behind a small HTTP server, `git daemon`, and a stand-in for ssh that records how git
would have connected. Names under .test are resolved only inside this process
(`fake_dns`): the git subprocess cannot resolve them, so a fetch that works proves git
connected to the address the guard checked and pinned."""

from __future__ import annotations

import http.server
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.pipeline import git, history
from deployments.pipeline.git import GitError, GitRefused
from deployments.pipeline.outbound import OutboundPolicy, OutboundRefused
from tests.conftest import free_port

from .conftest import Server, serve

LOOPBACK = OutboundPolicy.parse("loopback")
DENY = OutboundPolicy()
PROTOCOLS = ("http", "https", "ssh", "git", "file")


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory, demo_repo_path: Path) -> Path:
    root = tmp_path_factory.mktemp("git-served")
    bare = root / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(demo_repo_path), str(bare)], check=True)
    for key in ("uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant", "http.receivepack"):
        subprocess.run(["git", "-C", str(bare), "config", key, "true"], check=True)
    return root


def head_of(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root / "app.git"), "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()


def http_backend(root: Path) -> Any:
    """A CGI bridge to `git http-backend`, the smart HTTP server git ships."""

    def respond(handler: http.server.BaseHTTPRequestHandler, server: Server) -> None:
        path, _, query = handler.path.partition("?")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        separator = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(separator)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    return respond


@pytest.fixture
def git_server(served_root: Path) -> Iterator[Server]:
    yield from serve("127.0.0.1", http_backend(served_root))


def test_git_over_http_to_an_allowed_server_resolves_and_checks_out(
    git_server: Server, served_root: Path, tmp_path: Path
) -> None:
    url = f"{git_server.base}/app.git"

    sha = git.resolve_ref(url, "main", allowed_protocols=PROTOCOLS, policy=LOOPBACK)
    dest = git.checkout(url, sha, tmp_path / "src", allowed_protocols=PROTOCOLS, policy=LOOPBACK)

    assert sha == head_of(served_root)
    assert (dest / "www" / "index.html").exists()
    assert any("git-upload-pack" in r["path"] for r in git_server.requests)


def test_git_connects_to_the_checked_address_of_a_name_it_cannot_resolve_itself(
    git_server: Server, served_root: Path, fake_dns: Any
) -> None:
    looked_up = fake_dns("git.shipmate.test", ["127.0.0.1"])
    url = f"http://git.shipmate.test:{git_server.port}/app.git"
    unpinned = subprocess.run(["git", "ls-remote", "--", url], capture_output=True, text=True)
    assert unpinned.returncode != 0  # the control: git alone cannot reach it

    sha = git.resolve_ref(url, "main", allowed_protocols=PROTOCOLS, policy=LOOPBACK)

    assert sha == head_of(served_root)
    assert looked_up == ["git.shipmate.test"]
    assert {r["host"] for r in git_server.requests} == {f"git.shipmate.test:{git_server.port}"}


def test_lazy_fetches_into_the_history_cache_are_pinned_too(
    git_server: Server, served_root: Path, fake_dns: Any, tmp_path: Path, settings: Any
) -> None:
    fake_dns("git.shipmate.test", ["127.0.0.1"])
    url = f"http://git.shipmate.test:{git_server.port}/app.git"
    sha = head_of(served_root)

    cache = history.history_cache(tmp_path / "history", url, [sha], allowed_protocols=PROTOCOLS)

    assert history.commits_between(cache, None, sha)[0]["sha"] == sha


def test_the_default_policy_refuses_git_over_http_to_loopback_before_any_request(git_server: Server) -> None:
    with pytest.raises(GitRefused, match="loopback") as refused:
        git.resolve_ref(f"{git_server.base}/app.git", "main", allowed_protocols=PROTOCOLS, policy=DENY)

    assert isinstance(refused.value, OutboundRefused)
    time.sleep(0.1)
    assert git_server.requests == []


def test_a_name_that_rebinds_to_an_internal_address_is_refused(git_server: Server, fake_dns: Any) -> None:
    fake_dns("rebind.shipmate.test", ["10.0.0.1"])

    with pytest.raises(GitRefused, match="resolves to 10.0.0.1"):
        git.resolve_ref(
            f"http://rebind.shipmate.test:{git_server.port}/app.git", "main", allowed_protocols=PROTOCOLS
        )
    assert git_server.requests == []


def test_git_does_not_follow_a_redirect(git_server: Server, redirector: Server) -> None:
    redirector.location = f"{git_server.base}/app.git/info/refs?service=git-upload-pack"
    url = f"{redirector.base}/app.git"
    # The control: plain git follows this redirect to the other server.
    followed = subprocess.run(
        ["git", "-c", "http.followRedirects=true", "ls-remote", "--", url], capture_output=True, text=True
    )
    assert followed.returncode == 0 and git_server.requests
    git_server.requests.clear()

    with pytest.raises(GitError):
        git.resolve_ref(url, "main", allowed_protocols=PROTOCOLS, policy=LOOPBACK)

    assert redirector.requests
    assert git_server.requests == []


@pytest.fixture
def git_daemon(served_root: Path) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={served_root}",
            "--export-all",
            str(served_root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["git", "ls-remote", f"git://127.0.0.1:{port}/app.git"], capture_output=True
        ).returncode:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_git_protocol_connects_to_the_checked_address(
    git_daemon: int, served_root: Path, fake_dns: Any
) -> None:
    fake_dns("daemon.shipmate.test", ["127.0.0.1"])

    sha = git.resolve_ref(
        f"git://daemon.shipmate.test:{git_daemon}/app.git",
        "main",
        allowed_protocols=PROTOCOLS,
        policy=LOOPBACK,
    )

    assert sha == head_of(served_root)


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `ssh` that records its arguments and fails, as ssh to a host without sshd would."""
    record = tmp_path / "ssh-args"
    script = tmp_path / "bin" / "ssh"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {record}\nexit 255\n')
    script.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", f"{script} -o BatchMode=yes")
    return record


@pytest.mark.parametrize(
    ("url", "user_host"),
    [
        ("ssh://git@git.shipmate.test:2222/srv/app.git", "git@git.shipmate.test"),
        ("git@git.shipmate.test:srv/app.git", "git@git.shipmate.test"),
        ("git+ssh://git.shipmate.test/srv/app.git", "git.shipmate.test"),
    ],
)
def test_ssh_connects_to_the_checked_address_and_checks_the_host_key_of_the_name(
    url: str, user_host: str, fake_ssh: Path, fake_dns: Any
) -> None:
    fake_dns("git.shipmate.test", ["127.0.0.1"])

    with pytest.raises(GitError):
        git.resolve_ref(url, "main", allowed_protocols=PROTOCOLS, policy=LOOPBACK)

    args = fake_ssh.read_text().splitlines()
    for option in (
        "HostName=127.0.0.1",
        "HostKeyAlias=git.shipmate.test",
        "ProxyCommand=none",
        "ProxyJump=none",
    ):
        assert option in args
        assert args[args.index(option) - 1] == "-o"
    assert user_host in args


def test_the_default_policy_refuses_ssh_to_loopback_before_ssh_runs(fake_ssh: Path) -> None:
    with pytest.raises(GitRefused, match="loopback"):
        git.resolve_ref("ssh://git@localhost/srv/app.git", "main", allowed_protocols=PROTOCOLS, policy=DENY)
    assert not fake_ssh.exists()


INTERNAL_REMOTES = [
    "https://169.254.169.254/latest/app.git",
    "http://[fd00:ec2::254]/app.git",
    "https://10.0.0.1/app.git",
    "https://2130706433/app.git",
    "https://0x7f.1/app.git",
    "http://[::ffff:127.0.0.1]:8080/app.git",
    "https://user:tok3n@192.168.1.10/app.git",
    "ssh://git@172.16.0.1/app.git",
    "git@100.64.0.1:app.git",
    "git@[::1]:app.git",
    "git://[fe80::1]/app.git",
    "git://0.0.0.0/app.git",
    "https://localhost./app.git",
]


@pytest.mark.parametrize("url", INTERNAL_REMOTES)
def test_internal_remotes_are_refused_before_git_runs_or_anything_connects(
    url: str, no_connections: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_git(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("git must not run for a refused remote")

    # Only commands with a remote may touch the network; none of them may start.
    monkeypatch.setattr(git.subprocess, "Popen", no_git)
    monkeypatch.setattr(git, "validate_ref", lambda ref: None)

    with pytest.raises(GitRefused) as refused:
        git.resolve_ref(url, "main", allowed_protocols=PROTOCOLS, policy=DENY)

    assert "tok3n" not in str(refused.value)
    assert no_connections == []
