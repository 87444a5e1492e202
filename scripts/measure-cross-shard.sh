#!/usr/bin/env bash
# Issue 17's two-shard transaction figure on a release build (docs/PERFORMANCE.md,
# "Transactions across two shards"): on a 3-node `dolmen demo` cluster split into four data
# groups at the quarters of the bench's keys (`bench/000000000000` … `bench/000000009999`),
# `dolmen bench --workload txn-local` (2-key read-modify-write, both keys in one quarter: one
# data group, the single-shard figure) and `--workload txn-cross` (the keys in two quarters:
# a two-phase commit across two data groups), CYCLES times, their order alternating from one
# cycle to the next, each run on the same cluster of the cycle; then, for context, `txn` on a
# fresh unsharded cluster of the same build (one group holds the oracle and every key).
# Clients are spread: client i sends everything to node i mod 3 (every node a gateway and a
# coordinator). Each run prints the bench's JSON line (with the three nodes' CPU per
# transaction, `server_cpu_us_per_op`) and, from the nodes' /metrics, the mean time they took
# per getReadVersion, snapshotRead and atomicCommit during the run, and the errors they answered;
# each sharded cycle first prints where group 0's and the data groups' leaders are.
# Usage: scripts/measure-cross-shard.sh
# Env: DURATION (10), CLIENTS (client counts, "32 1"), CYCLES (4), UNSHARDED (1: also measure
# `txn` unsharded), DOLMEN_BIN (release build in the shared target dir; built when missing),
# WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-cross-shard
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-32 1}"
CYCLES="${CYCLES:-4}"
UNSHARDED="${UNSHARDED:-1}"
THRIFT=27090
PEER=20090
ADMIN=27190 # all below the ephemeral range, where outgoing connections could hold them
KEYS=10000
SPLITS="bench/000000002500,bench/000000005000,bench/000000007500"
# shellcheck source=scripts/demo-common.sh
. "$ROOT/scripts/demo-common.sh"

# The three nodes' request metrics, summed: one line `method sum_seconds count` per method,
# then `errors:method:code n` per error code.
scrape() {
  for i in 0 1 2; do
    curl -sf "http://127.0.0.1:$((ADMIN + i))/metrics" || true
  done | awk '
    /^dolmen_request_duration_seconds_(sum|count)\{method="(getReadVersion|snapshotRead|atomicCommit)"\}/ {
      split($1, a, "\""); kind = ($1 ~ /_sum/) ? "sum" : "count"; v[a[2] " " kind] += $2; m[a[2]] = 1
    }
    /^dolmen_request_errors_total\{/ {
      split($1, a, "\""); e["errors:" a[2] ":" a[4]] += $2
    }
    END {
      for (k in m) printf "%s %s %s\n", k, v[k " sum"] + 0, v[k " count"] + 0
      for (k in e) printf "%s %s\n", k, e[k]
    }'
}

# What the nodes did between two scrapes: mean ms per method, and the errors answered.
server_side() {
  awk '
    FNR == NR { before[$1] = $2; count[$1] = $3; next }
    $1 ~ /^errors:/ { n = $2 - before[$1]; if (n > 0) errs = errs " " substr($1, 8) "=" n; next }
    { n = $3 - count[$1]; if (n > 0) printf "%s %.2f ms (%d), ", $1, ($2 - before[$1]) * 1000 / n, n }
    END { printf "errors:%s\n", (errs == "" ? " none" : errs) }' "$1" "$2"
}

# run_bench WORKLOAD CLIENTS LABEL: one measured run, spread over the nodes, keys preloaded.
run_bench() {
  local pids
  pids=$(pgrep -P "$DEMO" | paste -sd, -)
  scrape >"$WORK_DIR/before"
  line=$("$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --read-strategy spread --no-preload \
    --keys "$KEYS" --value-size 256 --workload "$1" --clients "$2" --duration "$DURATION" \
    --server-pids "$pids" 2>/dev/null | grep -E '^\{' | head -n 1)
  scrape >"$WORK_DIR/after"
  echo "$3, $1 @$2 (load average $(cut -d" " -f1 /proc/loadavg)): $line"
  echo "  nodes: $(server_side "$WORK_DIR/before" "$WORK_DIR/after")"
}

# Where the leaders are: group 0's (the oracle and the decisions) and each data group's.
leaders() {
  "$DOLMEN_BIN" cluster status --endpoints "127.0.0.1:$ADMIN" --token-file "$WORK_DIR/demo/admin-token" \
    2>/dev/null | awk '
      /^group/ { groups = 1; next }
      !groups && $3 == "leader" { g0 = $1 }
      groups && NF { data = data " " $1 ":" $(NF - 4) }
      END { printf "leaders: group 0 on node %s; data group:node%s\n", g0, data }'
}

# Writes every key once (the bench's preload: 1,000 keys per commit, some across groups).
preload() {
  "$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --read-strategy spread --keys "$KEYS" \
    --value-size 256 --workload txn-local --clients 1 --ops 1 >/dev/null 2>&1
}

say "2-key transactions in one data group vs across two, four data groups ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  order=(txn-local txn-cross)
  [ $((cycle % 2)) = 0 ] && order=(txn-cross txn-local)
  start_demo "$DOLMEN_BIN" --split-keys "$SPLITS"
  preload
  echo "cycle $cycle, four-shards, $(leaders)"
  for clients in $CLIENTS; do
    for workload in "${order[@]}"; do
      run_bench "$workload" "$clients" "cycle $cycle, four-shards"
    done
  done
  stop_demo
  sleep 3 # the nodes' listeners close as their processes exit
  if [ "$UNSHARDED" = 1 ]; then
    start_demo "$DOLMEN_BIN"
    preload
    for clients in $CLIENTS; do
      run_bench txn "$clients" "cycle $cycle, one-group"
    done
    stop_demo
    sleep 3
  fi
done
say "done"
