#!/usr/bin/env bash
# `make run`: Shipmate on http://127.0.0.1:8000 with the embedded defaults
# (SQLite, local Redis, local Docker engine and registry, demo data).
# Ctrl-C stops everything this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="$root/.state/run"
mkdir -p "$state"

started_services=0
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping Shipmate…"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$started_services" = 1 ]; then scripts/services.sh stop run; fi
}
trap cleanup INT TERM EXIT

scripts/services.sh start run
started_services=1
set -a; . "$state/services.env"; set +a
# The engine services.sh starts itself has no bridge (--bridge=none), so builds there
# need the host network; an existing engine keeps the safer default (bridge).
case "$DOCKER_HOST" in
  unix:///tmp/shipmate-*-run/docker.sock) export SHIPMATE_BUILD_NETWORK_MODE=${SHIPMATE_BUILD_NETWORK_MODE:-host} ;;
esac

# A stable secret key per install, kept out of git with the rest of the state.
[ -f "$state/secret_key" ] || (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(50))' > "$state/secret_key")
export SECRET_KEY_FILE="$state/secret_key"
export SHIPMATE_STATE_DIR="$state"
export DJANGO_SETTINGS_MODULE=pipeline_ui.settings
host=${SHIPMATE_HOST:-127.0.0.1}
port=${SHIPMATE_PORT:-8000}
py="$root/.venv/bin"

"$py/python" manage.py migrate --no-input -v0
"$py/python" manage.py seed_demo

"$py/celery" -A pipeline_ui worker --loglevel=INFO --concurrency=2 -n "shipmate@%h" > "$state/worker.log" 2>&1 &
pids+=($!)
"$py/celery" -A pipeline_ui beat --loglevel=INFO -s "$state/celerybeat-schedule" > "$state/beat.log" 2>&1 &
pids+=($!)
"$py/uvicorn" pipeline_ui.asgi:application --host "$host" --port "$port" --no-access-log --timeout-graceful-shutdown 2 &
pids+=($!)

echo
echo "Shipmate runs on http://$host:$port/  (worker and beat logs: $state/*.log)"
echo "Demo logins are printed above. Press Ctrl-C to stop."
wait -n "${pids[@]}" || true
