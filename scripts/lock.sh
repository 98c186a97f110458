#!/usr/bin/env bash
# Re-resolve the dependency locks after changing pyproject.toml: every transitive
# package pinned, with hashes. requirements.lock is what `make run` and the image
# install; requirements-dev.lock adds the test tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/bootstrap.sh tools
uv=.state/tools/bin/uv
compile=("$uv" pip compile pyproject.toml --generate-hashes --python-version 3.11 -q
         --custom-compile-command "scripts/lock.sh")
"${compile[@]}" -o requirements.lock "$@"
"${compile[@]}" --extra dev -o requirements-dev.lock "$@"
