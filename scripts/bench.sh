#!/usr/bin/env bash
# `make bench`: start the test services on loopback, run the benchmarks, and let each
# write its section of docs/PERFORMANCE.md. Benchmarks measure, they assert nothing.
#
#   scripts/bench.sh                      # all of them
#   scripts/bench.sh log_latency sse_fanout
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
all=(log_latency log_ingest log_history click_to_log deploy_vs_shell sse_fanout rollback_times pages_at_scale log_dom)
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${all[@]}")
# Stop the services afterwards only if this run started them (a test run may share them).
if [ -f .state/test/redis.pid ] && kill -0 "$(cat .state/test/redis.pid)" 2>/dev/null; then
  echo "test services already running; leaving them running afterwards"
else
  trap 'scripts/services.sh stop test' EXIT
fi
scripts/services.sh start test
set -a; . "$root/.state/test/services.env"; set +a
failed=()
for name in "${selected[@]}"; do
  [ -f "bench/$name.py" ] || { echo "no benchmark bench/$name.py" >&2; exit 2; }
  echo "== bench/$name.py"
  # Each benchmark stops by itself; the timeout only guards against a hung service.
  if ! timeout --kill-after=10 300 .venv/bin/python -m "bench.$name"; then
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "benchmarks failed: ${failed[*]}" >&2
  exit 1
fi
echo "results: docs/PERFORMANCE.md"
