"""Settings for the test run: the real ones, with the test services' addresses."""

import os
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SHIPMATE_STATE_DIR", str(_root / ".state" / "test"))

from pipeline_ui.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file, not SQLite's shared-cache memory database: the Celery worker thread and the
# heartbeat thread write concurrently, and only a file database honours WAL and the
# busy timeout.
DATABASES["default"].setdefault("TEST", {})  # noqa: F405
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # Per process, so two test runs on one machine never share (and destroy) one file.
    DATABASES["default"]["TEST"]["NAME"] = str(STATE_DIR / f"test-db-{os.getpid()}.sqlite3")  # noqa: F405
# The test engine has no bridge, and the demo Dockerfile's RUN needs no network.
BUILD_NETWORK_MODE = "none"
# Every test service (git, registry, engine, the apps deployed) listens on 127.0.0.1;
# the outbound guard's own tests switch back to the default deny (tests/security/).
OUTBOUND_ALLOW_INTERNAL = ["loopback"]
# Short leases so reaper tests need not wait long.
LEASE_SECONDS = 10
