"""The `shipmate` CLI run as a user runs it (`python -m shipmate_cli` in a subprocess,
its config under a temporary XDG_CONFIG_HOME) against the real ASGI server, worker,
Docker engine and registry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.api.services import access_token_create
from tests.live import serve_asgi

CLI_DIR = Path(__file__).resolve().parents[2] / "cli"


@pytest.fixture
def server(transactional_db: Any) -> Iterator[str]:
    with serve_asgi() as url:
        yield url


class Shipmate:
    """One user's `shipmate`: its own config folder."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPMATE_")}
        self.env |= {"PYTHONPATH": str(CLI_DIR), "XDG_CONFIG_HOME": str(home), "PYTHONUNBUFFERED": "1"}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "shipmate_cli", *args]

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args),
            input=input.encode() if input is not None else None,
            capture_output=True,
            env=self.env | (env or {}),
            timeout=timeout,
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env | (env or {})
        )


@pytest.fixture
def token_for() -> Callable[..., str]:
    def make(user: Any, scopes: tuple[str, ...] = ("read", "deploy", "approve", "admin")) -> str:
        return access_token_create(user=user, name="cli", scopes=scopes, expires_at=None)[1]

    return make


@pytest.fixture
def shipmate_as(tmp_path: Path, server: str, token_for: Callable[..., str]) -> Callable[..., Shipmate]:
    """A logged-in `shipmate` for `user`."""

    def make(user: Any) -> Shipmate:
        cli = Shipmate(tmp_path / f"config-{user.username}")
        token = token_for(user)
        done = cli("login", server, "--token", token)
        assert done.returncode == 0, done.stderr.decode()
        cli.token = token  # type: ignore[attr-defined]
        return cli

    return make
