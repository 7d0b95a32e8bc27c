#!/usr/bin/env bash
# Container test, run by CI after `make test` (README, "Running in a container"):
#   1. ../shared/tools/container-smoke.sh builds the Dockerfile with podman (no registry: it makes
#      a local stand-in for python:3.11-slim) and health-checks one container;
#   2. two clusters (dc1, dc2) run from that image on the host network, each with its own named
#      volume for /data, and are peered with the `peering` CLI from the host; both must turn ACTIVE;
#   3. cluster A is stopped (must exit 0 on SIGTERM) and started again: its peering must still be
#      there (same ID, from the volume) and both sides ACTIVE again (B still trusts A's CA);
#   4. deploy/compose.yaml for real, with podman-compose: PostgreSQL, three replicas of that image
#      and HAProxy in front (the pinned official images are stood in for by local builds of
#      Debian's packages, deploy/standins/, tagged with the pinned names: no registry here); a walk
#      through the balancer: writes, reads on every replica, /v1/status/leader and /peers, a SQLite
#      cluster peering through the balancer's TCP passthrough, kill -9 of the lease holder's
#      container and another replica taking over while the peer stays ACTIVE; then torn down by name.
# Usage: bash deploy/container-test.sh        (root, Debian; podman and podman-compose are
#        apt-installed when missing)
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
  compose_teardown
  for c in "${STARTED[@]}"; do
    podman rm -f -t 5 "$c" >/dev/null 2>&1 || true
    podman volume rm -f "$c" >/dev/null 2>&1 || true
  done
  rm -f "$CTR_WORK/$RUN_ID.podman.err" "$COMPOSE_LOG"
  if [ "$result" = OK ]; then
    echo "container test: OK ($(($(date +%s) - t0)) s)"
  else
    echo "container test: FAILED ($(($(date +%s) - t0)) s)"
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
# deploy/compose.yaml's project (section 6): its containers, volumes and network, by name
PROJECT="$RUN_ID-r"
COMPOSE_LOG="$CTR_WORK/$RUN_ID.compose.log"
COMPOSE_SERVICES=(postgres replica-1 replica-2 replica-3 lb)
COMPOSE_VOLUMES=(postgres-data replica-1-data replica-2-data replica-3-data)
COMPOSE_STARTED=
PEERING_PG_PASSWORD=
compose_teardown() {
  [ -n "$COMPOSE_STARTED" ] || return 0
  local s v
  for s in "${COMPOSE_SERVICES[@]}"; do podman rm -f -t 5 "${PROJECT}_${s}_1" >/dev/null 2>&1 || true; done
  for v in "${COMPOSE_VOLUMES[@]}"; do podman volume rm -f "${PROJECT}_$v" >/dev/null 2>&1 || true; done
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
  COMPOSE_STARTED=
}
# the database password is in podman-compose's output (its podman command lines): shown redacted only
redact() {
  if [ -n "$PEERING_PG_PASSWORD" ]; then sed "s/$PEERING_PG_PASSWORD/<password>/g"; else cat; fi
}
trap cleanup EXIT

fail() {
  echo "FAILED: $*" >&2
  for c in "${STARTED[@]}"; do
    echo "--- last log lines of $c:" >&2
    # not `logs --tail`: podman 4.3 prints nothing with it for a container that has exited
    podman logs "$c" 2>&1 | tail -30 >&2 || true
  done
  if [ -n "$COMPOSE_STARTED" ]; then
    for s in "${COMPOSE_SERVICES[@]}"; do
      echo "--- last log lines of ${PROJECT}_${s}_1:" >&2
      podman logs "${PROJECT}_${s}_1" 2>&1 | tail -20 | redact >&2 || true
    done
    echo "--- podman-compose (redacted):" >&2
    tail -30 "$COMPOSE_LOG" 2>/dev/null | redact >&2 || true
  fi
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

# ---- 6. deploy/compose.yaml for real: PostgreSQL, three replicas, HAProxy; a walk through the balancer
# podman-compose from Debian, and CNI's dnsname plugin so that containers find each other by name
if ! command -v podman-compose >/dev/null || [ ! -x /usr/lib/cni/dnsname ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
    podman-compose golang-github-containernetworking-plugin-dnsname >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
      --no-install-recommends podman-compose golang-github-containernetworking-plugin-dnsname >/dev/null; } \
    || fail "apt-get install podman-compose"
fi
# the pinned official images, stood in for by Debian's packages under the same names (no registry)
pinned() { sed -n "s|^ *image: *\(docker\.io/library/$1:[^ ]*\) *$|\1|p" deploy/compose.yaml; }
PG_IMAGE=$(pinned postgres) LB_IMAGE=$(pinned haproxy)
[ -n "$PG_IMAGE" ] && [ -n "$LB_IMAGE" ] || fail "deploy/compose.yaml pins no postgres or haproxy image"
pq build -q --pull=never --network host -t "$PG_IMAGE" -f deploy/standins/postgres.Containerfile deploy/standins \
  >/dev/null || fail "building the stand-in for $PG_IMAGE"
pq build -q --pull=never --network host -t "$LB_IMAGE" -f deploy/standins/haproxy.Containerfile deploy/standins \
  >/dev/null || fail "building the stand-in for $LB_IMAGE"
echo "stand-in $PG_IMAGE: $(podman run --rm --entrypoint postgres "$PG_IMAGE" --version)"
echo "stand-in $LB_IMAGE: $(podman run --rm "$LB_IMAGE" haproxy -v | head -1)"
lap "compose tools and stand-in images"

PEERING_PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
read -r LB_HTTP LB_PEER B2_HTTP <<<"$(free_ports 3)"
export PEERING_PG_PASSWORD PEERING_IMAGE="$IMAGE" PEERING_RESTART=no \
  PEERING_LB_HTTP_PORT="$LB_HTTP" PEERING_LB_PEERING_PORT="$LB_PEER"
compose() { podman-compose -f deploy/compose.yaml -p "$PROJECT" "$@" >>"$COMPOSE_LOG" 2>&1; }
ctr() { echo "${PROJECT}_$1_1"; }
LB="127.0.0.1:$LB_HTTP"

# podman-compose 1.0 does not wait for `condition: service_healthy`: PostgreSQL first, until healthy
COMPOSE_STARTED=1
compose up -d postgres || fail "podman-compose up postgres"
for i in $(seq 1 60); do
  podman healthcheck run "$(ctr postgres)" >/dev/null 2>&1 && break
  [ "$i" -lt 60 ] || fail "PostgreSQL not healthy within 30 s"
  sleep 0.5
done
echo "postgres healthy after $i poll(s)"
compose up -d || fail "podman-compose up"
for s in replica-1 replica-2 replica-3; do
  for i in $(seq 1 60); do
    pq healthcheck run "$(ctr "$s")" >/dev/null 2>&1 && break
    [ "$(podman inspect -f '{{.State.Running}}' "$(ctr "$s")" 2>/dev/null)" = true ] || fail "$s is not running"
    [ "$i" -lt 60 ] || fail "$s not healthy within 30 s"
    sleep 0.5
  done
done
[ "$(podman inspect -f '{{.State.Running}}' "$(ctr lb)")" = true ] || fail "the balancer is not running"
# /v1/status/leader through the balancer: a replica holds the lease; /peers lists all three
leader=
for i in $(seq 1 60); do
  leader=$(curl -fsS -m 2 "http://$LB/v1/status/leader" 2>/dev/null | tr -d '"' || true)
  [ -n "$leader" ] && break
  [ "$i" -lt 60 ] || fail "no leader through the balancer within 30 s"
  sleep 0.5
done
peers=$(curl -fsS -m 2 "http://$LB/v1/status/peers") || fail "GET /v1/status/peers through the balancer"
[ "$peers" = '["replica-1:8503","replica-2:8503","replica-3:8503"]' ] || fail "peers through the balancer: $peers"
echo "through the balancer: leader $leader, peers $peers"
for s in replica-1 replica-2 replica-3; do
  ! podman logs "$(ctr "$s")" 2>&1 | grep -qF "$PEERING_PG_PASSWORD" || fail "$s logged the database password"
done
lap "compose up (PostgreSQL, three replicas, balancer healthy)"

# writes through the balancer, seen by every replica (read with the CLI inside each container)
# token_addresses: the ServerAddresses of a token on stdin (the token itself is never printed)
token_addresses() {
  python3 -c 'import base64, json, sys; print(",".join(json.loads(base64.b64decode(sys.stdin.read()))["ServerAddresses"]))'
}
probe=$("$PEERING" generate-token -http-addr "$LB" -name probe) || fail "generate-token through the balancer"
addresses=$(token_addresses <<<"$probe")
unset probe
[ "$addresses" = "replica-1:8503,replica-2:8503,replica-3:8503" ] || fail "the token lists $addresses"
echo "a token made through the balancer lists every replica: $addresses"
TOKEN=$("$PEERING" generate-token -http-addr "$LB" -name cluster-b -server-external-addresses lb:8503) \
  || fail "generate-token through the balancer"
# seen_everywhere NAME REPLICAS...: each replica's own API (inside its container) shows peering NAME
seen_everywhere() {
  local name=$1 s i
  shift
  for s in "$@"; do
    for i in $(seq 1 40); do
      podman exec "$(ctr "$s")" peering read -name "$name" >/dev/null 2>&1 && break
      [ "$i" -lt 40 ] || fail "$s does not show peering $name within 10 s"
      sleep 0.25
    done
  done
  echo "peering $name (written through the balancer) read on $*"
}
seen_everywhere cluster-b replica-1 replica-2 replica-3

# a SQLite cluster on the compose network establishes through the balancer's peering port (TCP
# passthrough: it checks a replica's own certificate) and heartbeats through it
CB2="$RUN_ID-b2"
podman volume create "$CB2" >/dev/null
STARTED+=("$CB2")
pq run -d --name "$CB2" --network "${PROJECT}_default" -v "$CB2:/data" -p "127.0.0.1:$B2_HTTP:8500" \
  -e PEERING_DATACENTER=dc2 -e PEERING_ADVERTISE_ADDR="$CB2:8503" \
  -e PEERING_HEARTBEAT_INTERVAL=0.5 -e PEERING_HEARTBEAT_TIMEOUT=10 \
  "$IMAGE" >/dev/null || fail "podman run $CB2"
wait_up "$CB2" "$B2_HTTP"
since=$(date +%s)
"$PEERING" establish -http-addr "127.0.0.1:$B2_HTTP" -name cluster-a -peering-token "$TOKEN" \
  || fail "establish on the SQLite cluster through the balancer"
unset TOKEN
wait_active "$B2_HTTP" cluster-a "SQLite cluster" "$since"
wait_active "$LB_HTTP" cluster-b "replicas (through the balancer)" "$since"
lap "writes through the balancer, read on every replica, a peer established through it"

# kill -9 of the lease holder's container: another replica takes over within the TTL (10 s) plus a
# little; the balancer routes around the dead one; the peer never leaves ACTIVE
holder=${leader%%:*}
[[ "$holder" =~ ^replica-[123]$ ]] || fail "the leader $leader is not a replica of the compose file"
pq kill -s KILL "$(ctr "$holder")" >/dev/null || fail "podman kill $holder"
killed=$(date +%s.%N)
echo "killed $holder (the lease holder) with SIGKILL"
not_active=0 now_leader=
while :; do
  [ "$(peering_field "$B2_HTTP" cluster-a State)" = ACTIVE ] || not_active=$((not_active + 1))
  now_leader=$(curl -fsS -m 2 "http://$LB/v1/status/leader" 2>/dev/null | tr -d '"' || true)
  [ -n "$now_leader" ] && [ "$now_leader" != "$leader" ] && break
  [ "$(date +%s)" -lt "$(( ${killed%.*} + 20 ))" ] \
    || fail "no other replica took the lease within 20 s of the kill (leader: ${now_leader:-none})"
  sleep 0.2
done
takeover=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$killed")
echo "$now_leader took over $takeover s after the kill (lease TTL 10 s)"
python3 -c "import sys; sys.exit(float(sys.argv[1]) > 15)" "$takeover" || fail "takeover took $takeover s (> TTL + 5 s)"
survivors=()
for s in replica-1 replica-2 replica-3; do [ "$s" = "$holder" ] || survivors+=("$s"); done
"$PEERING" generate-token -http-addr "$LB" -name cluster-c >/dev/null || fail "a write through the balancer after the kill"
seen_everywhere cluster-c "${survivors[@]}"
since=$(date +%s)
wait_active "$B2_HTTP" cluster-a "SQLite cluster after the kill" "$since"
[ "$not_active" = 0 ] || fail "the SQLite cluster's peering left ACTIVE $not_active time(s) during the takeover"
echo "the SQLite cluster's peering stayed ACTIVE throughout"
lap "kill -9 of the lease holder, takeover"

# teardown by name: the peer (on the project's network), compose down, then nothing of the project is left
pq rm -f -t 5 "$CB2" >/dev/null || fail "podman rm $CB2"
compose down -v || fail "podman-compose down"
pq network rm "${PROJECT}_default" >/dev/null || fail "podman network rm ${PROJECT}_default"
left=$(podman ps -a --format '{{.Names}}' | grep -F "$PROJECT" || true)
left+=$(podman volume ls -q | grep -F "$PROJECT" || true)
[ -z "$left" ] || fail "left after teardown: $left"
COMPOSE_STARTED=
lap "compose down (containers, volumes, network removed)"

result=OK
