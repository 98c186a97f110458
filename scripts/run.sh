#!/usr/bin/env bash
# `make run`: Shipmate on http://127.0.0.1:8000 with the embedded defaults (SQLite,
# local Redis, local Docker engine and registry, demo data), supervised by run.py in
# the runtime virtual environment (.venv-run: runtime packages only). Ctrl-C stops
# everything it started; a second Ctrl-C stops it at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$root/.venv-run/bin/python" ]; then
  echo "run: no runtime environment yet; run 'make run' (or scripts/bootstrap.sh run) first" >&2
  exit 1
fi
exec "$root/.venv-run/bin/python" "$root/scripts/run.py" "$@"
