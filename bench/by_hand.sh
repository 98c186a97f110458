#!/usr/bin/env bash
# The demo deployment done by hand, step for step what Shipmate's pipeline does, for
# bench/deploy_vs_shell.py to time against it.
#
#   bench/by_hand.sh REPO_DIR PORT CONTAINER_NAME
#
# Needs DOCKER_HOST and SHIPMATE_REGISTRY (source .state/test/services.env). Prints
# "step NAME MILLISECONDS" for each step.
set -euo pipefail
repo=${1:?usage: by_hand.sh REPO_DIR PORT CONTAINER_NAME}
port=${2:?port}
name=${3:?container name}
image="${SHIPMATE_REGISTRY:?}/shipmate-bench/byhand"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s%3N; }
t=$(now)
step() { local n; n=$(now); echo "step $1 $((n - t))"; t=$n; }

# Checkout: clone and pin the commit main points at.
git clone -q "$repo" "$work/src"
cd "$work/src"
sha=$(git rev-parse main)
git -c advice.detachedHead=false checkout -q "$sha"
step checkout

# Build with the classic builder (the one Docker's API, and so Shipmate, uses) and the same labels.
DOCKER_BUILDKIT=0 docker build -q --network host \
  --label "org.opencontainers.image.source=$repo" \
  --label "org.opencontainers.image.revision=$sha" \
  --label "org.opencontainers.image.ref.name=main" \
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -t "$image:$sha" -f Dockerfile . > /dev/null
step build

docker run --rm --network none "$image:$sha" sh /app/test.sh > /dev/null
step test

docker push -q "$image:$sha" > /dev/null
step push

# Roll out: replace the running container and wait until the app answers.
docker stop "$name" > /dev/null 2>&1 || true
docker rm "$name" > /dev/null 2>&1 || true
docker run -d --name "$name" --init --network host -e "PORT=$port" "$image:$sha" > /dev/null
for _ in $(seq 1 150); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz"; then
    step rollout
    exit 0
  fi
  sleep 0.2
done
echo "by_hand: $name never answered on port $port" >&2
exit 1
