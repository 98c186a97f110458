#!/usr/bin/env bash
# Install what Shipmate needs on Debian/Ubuntu: system packages and the virtual
# environments, from the locks (every package pinned, with hashes). Safe to run
# again: apt installs only what is missing, and uv makes each environment match
# its lock exactly (it also removes what the lock does not name).
#
#   scripts/bootstrap.sh run    # .venv-run from requirements.lock (runtime only; `make run`)
#   scripts/bootstrap.sh test   # .venv from requirements-dev.lock, plus .venv-run (`make test`)
#   scripts/bootstrap.sh tools  # only uv, for scripts/lock.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-run}

need=()
if [ "$profile" != tools ]; then
  for pair in redis-server:redis-server dockerd:docker.io docker-registry:docker-registry \
              busybox:busybox-static git:git curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  [ -x /bin/busybox ] || need+=(busybox-static)
fi
# Debian ships venv's ensurepip separately; a python3 from elsewhere (pyenv) has it built in.
if [ ! -x "$root/.state/tools/bin/uv" ]; then
  python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
fi
if [ "$profile" = test ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
  # tests/cli/test_install.py builds `pip install ./cli` offline with Debian's own tools.
  /usr/bin/python3 -c 'import setuptools, wheel, pip, ensurepip' >/dev/null 2>&1 \
    || need+=(python3-venv python3-pip python3-setuptools python3-wheel)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi

# uv itself, pinned by hash, in a small environment of its own.
tools="$root/.state/tools"
if [ ! -x "$tools/bin/uv" ]; then
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$root/requirements-tools.lock"
fi
uv="$tools/bin/uv"

sync() {  # sync VENV LOCK
  local venv=$1 lock=$2
  if [ ! -x "$venv/bin/python" ]; then
    "$uv" venv -q --python "$(command -v python3)" "$venv"
  fi
  "$uv" pip sync -q --require-hashes --python "$venv/bin/python" "$lock"
}

case "$profile" in
  run)  sync "$root/.venv-run" "$root/requirements.lock" ;;
  test) sync "$root/.venv" "$root/requirements-dev.lock"
        sync "$root/.venv-run" "$root/requirements.lock" ;;
  tools) ;;
  *) echo "usage: bootstrap.sh run|test|tools" >&2; exit 2 ;;
esac
