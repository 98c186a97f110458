#!/usr/bin/env bash
# `make test`: start the test services on loopback, run the whole suite, stop them.
# The suite runs twice: everything on the embedded SQLite, then the tests marked
# `postgres` (concurrency across workers) on the throwaway PostgreSQL server.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Stop the services afterwards only if this run started them (another run may share them).
if [ -f .state/test/redis.pid ] && kill -0 "$(cat .state/test/redis.pid)" 2>/dev/null; then
  echo "test services already running; leaving them running afterwards"
else
  trap 'scripts/services.sh stop test' EXIT
fi
scripts/services.sh start test
set -a; . "$root/.state/test/services.env"; set +a
.venv/bin/ruff check .
.venv/bin/mypy deployments/pipeline
.venv/bin/pytest -m "not postgres" "$@"
DATABASE_URL="$TEST_POSTGRES_URL" .venv/bin/pytest -m postgres "$@"
