"""scripts/services.sh refuses to pass off another program's port as its own service."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]


def services(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "services.sh"), action, "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SHIPMATE_STATE_DIR": str(tmp_path / "state"),
        "SHIPMATE_REDIS_PORT": str(free_port()),
        "SHIPMATE_REGISTRY_PORT": str(free_port()),
    }


@pytest.mark.parametrize(
    ("setting", "service"), [("SHIPMATE_REDIS_PORT", "redis"), ("SHIPMATE_REGISTRY_PORT", "the registry")]
)
def test_a_port_held_by_another_process_stops_start_with_its_name(
    env: dict[str, str], setting: str, service: str
) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", int(env[setting])))
    squatter.listen()
    try:
        result = services("start", env)
    finally:
        services("stop", env)
        squatter.close()

    assert result.returncode == 1
    message = result.stderr
    assert (
        f"cannot start {service}: 127.0.0.1:{env[setting]} is already in use by pid {os.getpid()}" in message
    )
    assert setting in message  # and says how to pick another port


def test_started_services_are_ours_and_out_of_the_terminals_reach(env: dict[str, str]) -> None:
    result = services("start", env)
    try:
        assert result.returncode == 0, result.stderr
        state = Path(env["SHIPMATE_STATE_DIR"])
        for name in ("redis", "registry"):
            pid = int((state / f"{name}.pid").read_text())
            # Own session: a Ctrl-C sent to the terminal's foreground group misses it.
            assert os.getsid(pid) != os.getsid(0)
    finally:
        stopped = services("stop", env)
    assert stopped.returncode == 0
    assert not (Path(env["SHIPMATE_STATE_DIR"]) / "redis.pid").exists()
