#!/usr/bin/env bash
# Container test, run by CI after `make test` (README, "Running in a container"):
#   1. ../shared/tools/container-smoke.sh builds the Dockerfile with podman (no registry: it makes
#      a local stand-in for python:3.11-slim) and health-checks one container;
#   2. two clusters (dc1, dc2) run from that image on the host network, each with its own named
#      volume for /data, and are peered with the `peering` CLI from the host; both must turn ACTIVE;
#   3. cluster A is stopped (must exit 0 on SIGTERM) and started again: its peering must still be
#      there (same ID, from the volume) and both sides ACTIVE again (B still trusts A's CA).
# Usage: bash deploy/container-test.sh        (root, Debian; the smoke script apt-installs podman)
# Env: CTR_WORK (/tmp/ctr, podman's config and storage), IMAGE (localhost/peering:ci)
set -euo pipefail
cd "$(dirname "$0")/.."

export CTR_WORK=${CTR_WORK:-/tmp/ctr}
IMAGE=${IMAGE:-localhost/peering:ci}
# the smoke script writes these (runc runtime, ulimits this machine allows, storage under
# $CTR_WORK); every podman call here must use the same configuration and image store
export CONTAINERS_CONF="$CTR_WORK/containers.conf"
export CONTAINERS_STORAGE_CONF="$CTR_WORK/storage.conf"
# podman builds OCI images by default, and OCI has no HEALTHCHECK (buildah drops it with a
# warning); the Docker format keeps it, as `docker build` does
export BUILDAH_FORMAT=docker

t0=$(date +%s)
tp=$t0
lap() {
  local now
  now=$(date +%s)
  echo "== $1: $((now - tp)) s (total $((now - t0)) s)"
  tp=$now
}

RUN_ID="peering-ci-$$"
CA="$RUN_ID-a" CB="$RUN_ID-b"     # container names; volumes are named the same
STARTED=()
result=FAILED
cleanup() {
  local rc=$?
  for c in "${STARTED[@]}"; do
    podman rm -f -t 5 "$c" >/dev/null 2>&1 || true
    podman volume rm -f "$c" >/dev/null 2>&1 || true
  done
  rm -f "$CTR_WORK/$RUN_ID.podman.err"
  if [ "$result" = OK ]; then
    echo "container test: OK ($(($(date +%s) - t0)) s)"
  else
    echo "container test: FAILED ($(($(date +%s) - t0)) s)"
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*" >&2
  for c in "${STARTED[@]}"; do
    echo "--- last log lines of $c:" >&2
    # not `logs --tail`: podman 4.3 prints nothing with it for a container that has exited
    podman logs "$c" 2>&1 | tail -30 >&2 || true
  done
  exit 1
}

# N ports free on 127.0.0.1 (all bound at once, so they differ)
free_ports() {
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# podman without systemd logs errors about healthcheck timers on run/start/stop; they are
# harmless (the check itself is run by hand below), so podman's stderr is shown only on failure
pq() {
  local err="$CTR_WORK/$RUN_ID.podman.err"
  if ! podman "$@" 2>"$err"; then
    cat "$err" >&2
    return 1
  fi
}

# ---- 1. build the image and smoke it (the smoke script prints its own phases)
SMOKE_PORT=$(free_ports 1)
old_volumes=$(podman volume ls -q 2>/dev/null || true)
IMAGE=$IMAGE CONTAINER_PORT=8500 HEALTH_PATH=/v1/status/leader PORT=$SMOKE_PORT \
  bash ../shared/tools/container-smoke.sh .
# its container is removed without -v, which leaves the anonymous volume of VOLUME /data
# (the smoke cluster's keys); remove the unused ones it created
for v in $(podman volume ls -q --filter dangling=true); do
  grep -qxF "$v" <<<"$old_volumes" || podman volume rm "$v" >/dev/null 2>&1 || true
done
lap "smoke (tools, base, stand-in, build, one container)"

# ---- 2. the CLI, on the host
if [ -x .venv/bin/peering ]; then
  PEERING=.venv/bin/peering
else
  make -s .venv/.installed
  PEERING=.venv/bin/peering
fi
"$PEERING" --version
lap cli

# ---- 3. two clusters, host network, one named volume each
# run_cluster NAME DC HTTP_PORT PEER_PORT
run_cluster() {
  podman volume create "$1" >/dev/null
  STARTED+=("$1")
  pq run -d --name "$1" --network host -v "$1:/data" \
    -e PEERING_DATACENTER="$2" \
    -e PEERING_HTTP_ADDR="127.0.0.1:$3" \
    -e PEERING_PEERING_ADDR="127.0.0.1:$4" \
    -e PEERING_ADVERTISE_ADDR="127.0.0.1:$4" \
    -e PEERING_HEARTBEAT_INTERVAL=0.5 \
    -e PEERING_HEARTBEAT_TIMEOUT=3 \
    "$IMAGE" >/dev/null || fail "podman run $1"
}

# wait_up NAME HTTP_PORT: /v1/status/leader answers 200 within 30 s, the container still running
wait_up() {
  local i
  for i in $(seq 1 60); do
    if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$2/v1/status/leader" 2>/dev/null; then
      echo "$1 up after $i poll(s): leader $(curl -fsS -m 2 "http://127.0.0.1:$2/v1/status/leader")"
      return 0
    fi
    [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || fail "$1 is not running"
    sleep 0.5
  done
  fail "$1 did not answer /v1/status/leader within 30 s"
}

read -r A_HTTP A_PEER B_HTTP B_PEER <<<"$(free_ports 4)"
run_cluster "$CA" dc1 "$A_HTTP" "$A_PEER"
run_cluster "$CB" dc2 "$B_HTTP" "$B_PEER"
wait_up "$CA" "$A_HTTP"
wait_up "$CB" "$B_HTTP"
[ "$(podman exec "$CA" id -u)" != 0 ] || fail "the container runs as root"
pq healthcheck run "$CA" >/dev/null || fail "HEALTHCHECK of $CA is not healthy"
echo "HEALTHCHECK of $CA: healthy"
lap "two clusters up"

# ---- 4. peer them from the host: token on A, establish on B
# the token is a secret: kept in a variable, never printed
TOKEN=$("$PEERING" generate-token -http-addr "127.0.0.1:$A_HTTP" -name cluster-b) || fail "generate-token on A"
[ -n "$TOKEN" ] || fail "generate-token on A printed no token"
since=$(date +%s)
"$PEERING" establish -http-addr "127.0.0.1:$B_HTTP" -name cluster-a -peering-token "$TOKEN" \
  || fail "establish on B"
unset TOKEN

# peering_field HTTP_PORT NAME FIELD: a field of `peering read` (pretty), empty if not readable
peering_field() {
  "$PEERING" read -http-addr "127.0.0.1:$1" -name "$2" 2>/dev/null | sed -n "s/^$3: *//p" || true
}
# heartbeat_since HTTP_PORT NAME SINCE: the peering's last heartbeat (StreamStatus, kept in
# memory) is at or after SINCE (epoch seconds): the link really works, not just a stored state
heartbeat_since() {
  curl -fsS -m 2 "http://127.0.0.1:$1/v1/peering/$2" 2>/dev/null | python3 -c 'import json, sys
from datetime import datetime
hb = json.load(sys.stdin)["StreamStatus"]["LastHeartbeat"]
sys.exit(not (hb and datetime.fromisoformat(hb.replace("Z", "+00:00")).timestamp() >= float(sys.argv[1])))' "$3"
}
# wait_active HTTP_PORT NAME WHERE SINCE: `peering read` says State ACTIVE and a heartbeat
# went through since SINCE, within 30 s
wait_active() {
  local i state=
  for i in $(seq 1 60); do
    state=$(peering_field "$1" "$2" State)
    if [ "$state" = ACTIVE ] && heartbeat_since "$1" "$2" "$4"; then
      echo "$3: peering $2 ACTIVE, heartbeating, after $i poll(s)"
      return 0
    fi
    sleep 0.5
  done
  fail "$3: peering $2 is ${state:-unreadable} after 30 s (expected ACTIVE with a heartbeat since $(date -u -d "@$4" +%T))"
}
wait_active "$A_HTTP" cluster-b "A" "$since"
wait_active "$B_HTTP" cluster-a "B" "$since"
ID_BEFORE=$(peering_field "$A_HTTP" cluster-b ID)
lap "peered (both ACTIVE)"

# ---- 5. restart A: graceful stop, same volume, peering kept and ACTIVE again
pq stop -t 10 "$CA" >/dev/null || fail "podman stop $CA"
code=$(podman inspect -f '{{.State.ExitCode}}' "$CA")
[ "$code" = 0 ] || fail "$CA exited $code on SIGTERM (expected 0)"
echo "$CA stopped, exit code 0"
since=$(date +%s)
pq start "$CA" >/dev/null || fail "podman start $CA"
wait_up "$CA" "$A_HTTP"
ID_AFTER=$(peering_field "$A_HTTP" cluster-b ID)
[ -n "$ID_AFTER" ] || fail "A lost its peering cluster-b across the restart"
[ "$ID_AFTER" = "$ID_BEFORE" ] || fail "A's peering cluster-b changed ID across the restart ($ID_BEFORE -> $ID_AFTER)"
echo "A kept peering cluster-b (ID $ID_AFTER)"
wait_active "$A_HTTP" cluster-b "A after restart" "$since"
wait_active "$B_HTTP" cluster-a "B after A's restart" "$since"
lap "restart of A (peering kept, ACTIVE again)"

result=OK
