"""Where `shipmate login` keeps the server's URL and the token: `config.json` in
click's application folder (`$XDG_CONFIG_HOME/shipmate` on Linux), readable by its
owner only. SHIPMATE_URL and SHIPMATE_TOKEN override it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def config_path() -> Path:
    return Path(click.get_app_dir("shipmate")) / "config.json"


def load() -> dict[str, str]:
    path = config_path()
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    for key in ("url", "token"):
        if value := os.environ.get(f"SHIPMATE_{key.upper()}"):
            stored[key] = value
    return stored


def save(url: str, token: str) -> Path:
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    # Created 0600 before the secret is written, then renamed over the old file: at
    # no moment can another user read the token.
    temporary = path.with_name(f".config.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"url": url, "token": token}, handle)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
