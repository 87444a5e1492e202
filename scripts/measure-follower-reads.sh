#!/usr/bin/env bash
# Follower reads under lease reads (docs/PERFORMANCE.md, "Follower reads under lease reads"):
# `dolmen bench --workload read` against a 3-node `dolmen demo` cluster started with
# DOLMEN_READS__CONSISTENCY_LEVEL=lease, with client i on node i mod 3 ("sticky": two thirds of
# the reads on followers) and with every client on the leader ("leader"), for each binary
# given, CYCLES times, alternating.
# Usage: scripts/measure-follower-reads.sh [BASELINE_BIN]
#   BASELINE_BIN, when given, is measured side by side with DOLMEN_BIN in the same run.
# Env: DURATION (10), CLIENTS (32), CYCLES (3), DOLMEN_BIN (release build in the shared target
# dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-follower-reads
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
export DOLMEN_READS__CONSISTENCY_LEVEL=lease

say "point reads under lease reads, on followers (sticky) and on the leader ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  for entry in "${BINS[@]}"; do
    name="${entry%%=*}"
    bin="${entry#*=}"
    start_demo "$bin"
    for strategy in sticky leader; do
      line=$("$bin" bench --endpoints "$ENDPOINTS" --keys 10000 --value-size 256 --workload read \
        --clients "$CLIENTS" --duration "$DURATION" --read-strategy "$strategy" 2>/dev/null |
        grep -E '^\{' | head -n 1)
      echo "cycle $cycle, $name, $strategy: $line"
    done
    stop_demo
    sleep 3 # the nodes' listeners close as their processes exit
  done
done
