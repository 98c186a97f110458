#!/usr/bin/env bash
# `make test`: start the test services on loopback, run the whole suite, stop them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
trap 'scripts/services.sh stop test' EXIT
scripts/services.sh start test
set -a; . "$root/.state/test/services.env"; set +a
.venv/bin/ruff check .
.venv/bin/pytest "$@"
