#!/usr/bin/env bash
# Start or stop the services Shipmate needs, on loopback, with their state under
# one folder that git ignores.
#
#   scripts/services.sh start PROFILE   # PROFILE: run (make run) or test (make test)
#   scripts/services.sh stop PROFILE
#
# "start" writes PROFILE's env file (STATE/services.env) with REDIS_URL,
# DOCKER_HOST, SHIPMATE_REGISTRY and, for the test profile, TEST_POSTGRES_URL.
# STATE is .state/PROFILE; for the run profile SHIPMATE_STATE_DIR moves it.
# Everything it starts is recorded by PID and "stop" ends only those PIDs. The
# services run in sessions of their own, so a Ctrl-C in the terminal does not reach
# them: whoever started them stops them, last.
set -euo pipefail

cmd=${1:?usage: services.sh start|stop run|test}
profile=${2:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.state/$profile"
if [ "$profile" = run ] && [ -n "${SHIPMATE_STATE_DIR:-}" ]; then state=$SHIPMATE_STATE_DIR; fi
mkdir -p "$state"
state=$(cd "$state" && pwd)
# Unix sockets have a ~107-byte path limit, and a clone may live deep: sockets and
# the engine's exec-root go to a short folder per state folder instead.
run="/tmp/shipmate-$(printf %s "$state" | md5sum | cut -c1-10)-$profile"
mkdir -p "$run"
envfile="$state/services.env"

case "$profile" in
  run)  redis_port=${SHIPMATE_REDIS_PORT:-6390}; registry_port=${SHIPMATE_REGISTRY_PORT:-5000}; pg_port=0 ;;
  test) redis_port=6391; registry_port=5001; pg_port=5491 ;;
  *) echo "unknown profile $profile" >&2; exit 2 ;;
esac

fail() { echo "services: $*" >&2; exit 1; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# "PID COMMAND" of whatever listens on 127.0.0.1:PORT, or nothing.
listener() { python3 "$root/scripts/port_owner.py" "$1"; }

# Refuse to start WHAT when another program holds its port: a ping would reach that
# program, and the suite would fail in confusing ways once it went away.
port_free() {  # port_free PORT WHAT SETTING
  local owner; owner=$(listener "$1")
  [ -z "$owner" ] || fail "cannot start $2: 127.0.0.1:$1 is already in use by pid $owner." \
    "Stop that process${3:+, or choose another port with $3}."
}

# Wait until the process in PIDFILE is alive and is the one listening on PORT.
wait_ours() {  # wait_ours SECONDS WHAT PIDFILE PORT LOG
  local seconds=$1 what=$2 pidfile=$3 port=$4 log=$5 pid owner
  for _ in $(seq 1 $((seconds * 10))); do
    pid=$( [ -f "$pidfile" ] && cat "$pidfile" || true)
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "services: $what (pid $pid) exited while starting; the end of $log:" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    owner=$(listener "$port")
    if [ -n "$pid" ] && [ "${owner%% *}" = "$pid" ]; then return 0; fi
    sleep 0.1
  done
  if [ -n "$owner" ]; then
    fail "$what did not come up: 127.0.0.1:$port is held by pid $owner, not by our pid ${pid:-?}"
  fi
  fail "$what did not come up within $seconds s; see $log"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "services: $what did not come up; see $state/*.log" >&2
  return 1
}

start_redis() {
  if ! alive "$state/redis.pid"; then
    port_free "$redis_port" redis SHIPMATE_REDIS_PORT
    rm -f "$state/redis.pid"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
      --maxmemory-policy noeviction --daemonize yes --pidfile "$state/redis.pid" \
      --logfile "$state/redis.log" --dir "$state"
  fi
  wait_ours 10 redis "$state/redis.pid" "$redis_port" "$state/redis.log"
  echo "REDIS_URL=redis://127.0.0.1:$redis_port/0" >> "$envfile"
}

docker_reachable() { DOCKER_HOST=$1 docker version --format '{{.Server.Version}}'; }

start_docker() {
  # Use an engine that is already there (DOCKER_HOST or the default socket) for
  # `make run`; tests always get their own so they cannot touch a user's containers.
  if [ "$profile" = run ]; then
    local existing=${DOCKER_HOST:-unix:///var/run/docker.sock}
    if docker_reachable "$existing" >/dev/null 2>&1; then
      echo "DOCKER_HOST=$existing" >> "$envfile"
      return
    fi
  fi
  local sock="unix://$run/docker.sock"
  if ! alive "$state/dockerd.pid"; then
    # No bridge and no iptables: no container gets an address outside loopback.
    setsid dockerd --bridge=none --iptables=false --ip6tables=false \
      --shutdown-timeout 2 -H "$sock" --data-root "$state/docker-data" --exec-root "$run/docker-exec" \
      --pidfile "$state/dockerd.pid" > "$state/dockerd.log" 2>&1 < /dev/null &
  fi
  wait_for 60 dockerd docker_reachable "$sock"
  alive "$state/dockerd.pid" || fail "dockerd exited while starting; see $state/dockerd.log"
  echo "DOCKER_HOST=$sock" >> "$envfile"
}

start_registry() {
  cat > "$state/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $state/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$registry_port
YML
  if ! alive "$state/registry.pid"; then
    port_free "$registry_port" "the registry" SHIPMATE_REGISTRY_PORT
    setsid docker-registry serve "$state/registry.yml" > "$state/registry.log" 2>&1 < /dev/null &
    echo $! > "$state/registry.pid"
  fi
  wait_ours 20 "the registry" "$state/registry.pid" "$registry_port" "$state/registry.log"
  wait_for 20 registry curl -fsS "http://127.0.0.1:$registry_port/v2/"
  echo "SHIPMATE_REGISTRY=127.0.0.1:$registry_port" >> "$envfile"
}

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }; done
  echo "services: PostgreSQL server binaries not found" >&2; return 1
}

# The data dir lives under $run, not the clone: the server runs as the unprivileged
# shipmate-pg user, which cannot reach a clone under a private home such as /root.
# It is a throwaway test database, so /tmp is fine.
pg_data="$run/pg-data"

start_postgres() {
  local bin; bin=$(pg_bin)
  if ! id shipmate-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin shipmate-pg
  fi
  chmod a+x "$run"  # shipmate-pg must traverse it even under a strict umask
  mkdir -p "$run/pg"
  chown shipmate-pg "$run/pg"
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    mkdir -p "$pg_data"; chown shipmate-pg "$pg_data"
    runuser -u shipmate-pg -- "$bin/initdb" -D "$pg_data" -U postgres --auth=trust > "$state/pg-init.log"
  fi
  if ! runuser -u shipmate-pg -- "$bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
    port_free "$pg_port" PostgreSQL
    runuser -u shipmate-pg -- "$bin/pg_ctl" -D "$pg_data" -l "$run/pg/postgres.log" -w \
      -o "-k $run/pg -h 127.0.0.1 -p $pg_port -c fsync=off" start > /dev/null
  fi
  local owner; owner=$(listener "$pg_port")
  [ "${owner%% *}" = "$(head -n1 "$pg_data/postmaster.pid")" ] ||
    fail "PostgreSQL: 127.0.0.1:$pg_port is held by pid ${owner:-nobody}, not by our server"
  echo "TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$pg_port/postgres" >> "$envfile"
}

stop_postgres() {
  local data
  # $state/pg-data: where older versions of this script kept it; stop that one too.
  for data in "$pg_data" "$state/pg-data"; do
    if [ -f "$data/PG_VERSION" ]; then
      runuser -u shipmate-pg -- "$(pg_bin)/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
  done
}

# SIGTERM every service first, then wait for each (up to 15 s, then SIGKILL): they
# shut down side by side, and the engine's container stops do not hold up the rest.
signal_pid() {
  if alive "$1"; then kill "$(cat "$1")" 2>/dev/null || true; fi
}

reap_pid() {
  if [ -f "$1" ]; then
    local pid; pid=$(cat "$1")
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "services: pid $pid ($1) did not stop within 15 s; killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$1"
}

case "$cmd" in
  start)
    : > "$envfile"
    start_redis
    start_docker
    start_registry
    if [ "$pg_port" != 0 ]; then start_postgres; fi
    ;;
  stop)
    stop_postgres
    for name in registry redis dockerd; do signal_pid "$state/$name.pid"; done
    for name in registry redis dockerd; do reap_pid "$state/$name.pid"; done
    ;;
  *) echo "usage: services.sh start|stop run|test" >&2; exit 2 ;;
esac
