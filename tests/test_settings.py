"""Settings that would otherwise fail late (at the first secret saved) fail at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def start(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the real settings in a clean environment and print the key they kept."""
    clean = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "pipeline_ui.settings",
        "SHIPMATE_STATE_DIR": str(tmp_path),
        "SECRET_KEY": "settings-test-key",
        **env,
    }
    program = "import django; django.setup(); from django.conf import settings; print(settings.FIELD_ENCRYPTION_KEY)"
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "x" * 44, Fernet.generate_key().decode()[:-4], "c2hvcnQ="],
    ids=["words", "wrong-alphabet", "truncated", "too-short"],
)
def test_bad_field_encryption_key_stops_start_up(tmp_path: Path, key: str) -> None:
    result = start(tmp_path, {"FIELD_ENCRYPTION_KEY": key})

    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last
    assert "FIELD_ENCRYPTION_KEY must be a Fernet key" in last
    assert key not in result.stderr  # the message never echoes a (mistyped) secret


def test_valid_field_encryption_key_starts(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()

    result = start(tmp_path, {"FIELD_ENCRYPTION_KEY": key})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key


def test_empty_field_encryption_key_starts_with_the_derived_key(tmp_path: Path) -> None:
    result = start(tmp_path, {"FIELD_ENCRYPTION_KEY": ""})

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
