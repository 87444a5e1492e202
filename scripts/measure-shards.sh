#!/usr/bin/env bash
# Issue 17's sharding figure on a release build (docs/PERFORMANCE.md, "Writes over four
# shards"): `dolmen bench --workload write` against a 3-node `dolmen demo` cluster, unsharded
# (one group holds the oracle and every key) and with four data groups whose split points
# divide the bench's keys (`bench/000000000000` … `bench/000000009999`) evenly, CYCLES times,
# alternating; client i on node i mod 3 ("spread": every node a gateway, the normal path once
# there are shards) and every client on the node group 0's leader is on ("leader": the
# leader-direct figure of one group).
# Usage: scripts/measure-shards.sh [BASELINE_BIN]
#   BASELINE_BIN, when given, is also measured unsharded in the same run.
# Env: DURATION (10), CLIENTS (32), CYCLES (3), DOLMEN_BIN (release build in the shared target
# dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-shards
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-32}"
CYCLES="${CYCLES:-3}"
BASELINE_BIN="${1:-}"
THRIFT=25090
PEER=23090
ADMIN=25190 # below the ephemeral range, where outgoing connections could hold them
SPLITS="bench/000000002500,bench/000000005000,bench/000000007500"
# shellcheck source=scripts/demo-common.sh
. "$ROOT/scripts/demo-common.sh"
if [ -n "$BASELINE_BIN" ] && [ ! -x "$BASELINE_BIN" ]; then
  echo "$SCRIPT: baseline binary '$BASELINE_BIN' is not executable" >&2
  exit 2
fi

# Each data group's leader as `group:node` pairs, from `dolmen cluster status` (empty when
# unsharded).
data_leaders() {
  "$1" cluster status --endpoints "127.0.0.1:$ADMIN" --token-file "$WORK_DIR/demo/admin-token" \
    2>/dev/null | awk '/^group/ { groups = 1; next } groups && NF { printf " %s:%s", $1, $(NF - 4) }'
}

# Waits (at most 30 s) until leader placement (docs/sharding.md §4.5) has moved every data
# group to its preferred node, (g - 1) mod 3, so a run does not measure the moves; prints where
# the leaders are. A build without placement, or an unsharded one, waits the whole 30 s or not
# at all (no data group).
placed() {
  local leaders want
  for _ in $(seq 60); do
    leaders=$(data_leaders "$1")
    [ -z "$leaders" ] && return 0
    want=$(for pair in $leaders; do g="${pair%%:*}"; printf ' %s:%s' "$g" $(((g - 1) % 3)); done)
    [ "$leaders" = "$want" ] && break
    sleep 0.5
  done
  echo "  data group:leader node$leaders"
}

RUNS=("one-group=$DOLMEN_BIN=" "four-shards=$DOLMEN_BIN=--split-keys $SPLITS")
[ -n "$BASELINE_BIN" ] && RUNS=("baseline=$BASELINE_BIN=" "${RUNS[@]}")
say "writes, unsharded vs four data groups ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  for entry in "${RUNS[@]}"; do
    name="${entry%%=*}"
    rest="${entry#*=}"
    bin="${rest%%=*}"
    flags="${rest#*=}"
    # shellcheck disable=SC2086 # the flags are words
    start_demo "$bin" $flags
    placed "$bin"
    for routing in leader spread; do
      strategy=()
      [ "$routing" = spread ] && strategy=(--read-strategy spread --no-preload)
      line=$("$bin" bench --endpoints "$ENDPOINTS" --keys 10000 --value-size 256 --workload write \
        --clients "$CLIENTS" --duration "$DURATION" "${strategy[@]}" 2>/dev/null | grep -E '^\{' | head -n 1)
      echo "cycle $cycle, $name, $routing: $line"
    done
    stop_demo
    sleep 3 # the nodes' listeners close as their processes exit
  done
done
