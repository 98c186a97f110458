"""Bad notification settings stop start-up with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_settings import start


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SHIPMATE_NOTIFY_MAX_ATTEMPTS", "0", "SHIPMATE_NOTIFY_MAX_ATTEMPTS must be at least 1, not 0"),
        ("SHIPMATE_NOTIFY_MAX_ATTEMPTS", "five", "SHIPMATE_NOTIFY_MAX_ATTEMPTS must be an integer"),
        ("SHIPMATE_NOTIFY_BACKOFF", "-1", "SHIPMATE_NOTIFY_BACKOFF must be at least 0.01"),
        ("SHIPMATE_NOTIFY_TIMEOUT", "soon", "SHIPMATE_NOTIFY_TIMEOUT must be a number"),
        ("SHIPMATE_NOTIFY_TIMEOUT", "nan", "SHIPMATE_NOTIFY_TIMEOUT must be at least 0.1"),
        ("SHIPMATE_URL", "shipmate.example.com", "SHIPMATE_URL must be an http(s) URL"),
    ],
)
def test_a_bad_notification_setting_stops_start_up(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    result = start(tmp_path, {name: value})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last and message in last


def test_good_notification_settings_start(tmp_path: Path) -> None:
    env = {"SHIPMATE_NOTIFY_MAX_ATTEMPTS": "3", "SHIPMATE_NOTIFY_BACKOFF": "0.5",
           "SHIPMATE_NOTIFY_TIMEOUT": "2.5", "SHIPMATE_URL": "https://shipmate.example.com/"}  # fmt: skip
    assert start(tmp_path, env).returncode == 0
