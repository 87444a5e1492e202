#!/usr/bin/env bash
# Issue 17's forwarding figures on release builds (docs/PERFORMANCE.md, "Forwarding on one
# stream"): `dolmen bench --workload write` against a 3-node `dolmen demo` cluster, with every
# client on the leader ("leader") and with client i on node i mod 3 ("spread": two thirds of
# the writes are forwarded by a follower), for each binary given, CYCLES times, alternating.
# Usage: scripts/measure-forwarding.sh [BASELINE_BIN]
#   BASELINE_BIN, when given, is measured side by side with DOLMEN_BIN in the same run.
# Env: DURATION (10), CLIENTS (32), CYCLES (3), DOLMEN_BIN (release build in the shared target
# dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-forwarding
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-32}"
CYCLES="${CYCLES:-3}"
BASELINE_BIN="${1:-}"
THRIFT=24090
PEER=22090
ADMIN=24190 # all below the ephemeral range, where outgoing connections could hold them
# shellcheck source=scripts/demo-common.sh
. "$ROOT/scripts/demo-common.sh"
measured_bins "$BASELINE_BIN"

say "writes through the leader vs spread over the three nodes ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  for entry in "${BINS[@]}"; do
    name="${entry%%=*}"
    bin="${entry#*=}"
    start_demo "$bin"
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
