#!/usr/bin/env bash
# Install what Shipmate needs on Debian/Ubuntu: system packages and the virtual
# environment. Safe to run again: it only installs what is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
profile=${1:-run}

need=()
for pair in redis-server:redis-server dockerd:docker.io docker-registry:docker-registry \
            busybox:busybox-static git:git curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -x /bin/busybox ] || need+=(busybox-static)
# Debian ships venv's ensurepip separately; a python3 from elsewhere (pyenv) has it built in.
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
fi
if [ "$profile" = test ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
fi

req="$root/requirements.txt"
[ "$profile" = test ] && req="$root/requirements-dev.txt"
stamp="$root/.venv/.installed-$profile"
if [ ! -x "$root/.venv/bin/python" ]; then
  python3 -m venv "$root/.venv"
fi
if [ ! -f "$stamp" ] || [ "$req" -nt "$stamp" ] || [ "$root/requirements.txt" -nt "$stamp" ]; then
  "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$stamp"
fi
