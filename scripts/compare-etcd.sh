#!/usr/bin/env bash
# Side-by-side comparison of Dolmen with a 3-member etcd 3.4 cluster (Debian's etcd-server) on
# this machine, loopback only (issue 6). In order:
#   1. the latency floor: `dolmen bench --probe` (fsync + loopback RTT) in the work dir's disk;
#   2. etcd: 3 members (temp data dirs) -> tools/etcd-bench -> members stopped by PID;
#   3. Dolmen: `dolmen demo` (3 nodes, temp dir) -> `dolmen bench --endpoints ...` -> stopped;
#   4. Dolmen standalone (one `dolmen serve`), write only, for the standalone target;
#   5. both tables again and a ratio summary (dolmen/etcd per workload x clients) with the
#      issue's targets.
# Only processes this script started are stopped; its temp dir is removed on exit.
#
# Environment (defaults in brackets):
#   DURATION [10] seconds per run   CLIENTS [1,32]   WORKLOADS [write,read,txn]
#   KEYS [10000]   VALUE_SIZE [256]   READ_STRATEGY [leader] (both tools: leader | spread)
#   STANDALONE [1] also bench one standalone node (write)
#   DOLMEN_BIN [$DOLMEN_TARGET_DIR/release/dolmen, built when missing
#     with CARGO_TARGET_DIR=DOLMEN_TARGET_DIR]
#   DOLMEN_TARGET_DIR [$CARGO_TARGET_DIR, else $HOME/.cache/dolmen/target: the build cache make uses]
#   ETCD_BENCH_TARGET_DIR [$HOME/.cache/dolmen/etcd-bench-target]
#   ETCD_CLIENT_PORT [23790] (3 ports)  ETCD_PEER_PORT [23800] (3 ports)
#   DOLMEN_THRIFT_PORT [29090] DOLMEN_PEER_PORT [27090] DOLMEN_ADMIN_PORT [29190] (3 each)
#   DOLMEN_STANDALONE_PORT [29080] (+ admin port +100)
#   WORK_DIR [a new dir under ${TMPDIR:-/tmp}] (etcd and Dolmen data: keep both on one disk)
# Usage: scripts/compare-etcd.sh 2>&1 | tee docs/etcd-baseline.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-1,32}"
WORKLOADS="${WORKLOADS:-write,read,txn}"
KEYS="${KEYS:-10000}"
VALUE_SIZE="${VALUE_SIZE:-256}"
READ_STRATEGY="${READ_STRATEGY:-leader}"
STANDALONE="${STANDALONE:-1}"
DOLMEN_THRIFT_PORT="${DOLMEN_THRIFT_PORT:-29090}"
DOLMEN_PEER_PORT="${DOLMEN_PEER_PORT:-27090}"
DOLMEN_ADMIN_PORT="${DOLMEN_ADMIN_PORT:-29190}"
DOLMEN_STANDALONE_PORT="${DOLMEN_STANDALONE_PORT:-29080}"

SCRIPT=compare-etcd
# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"
echo "runs: workloads $WORKLOADS at clients $CLIENTS, ${DURATION}s each, $KEYS keys, ${VALUE_SIZE}-byte values, read strategy $READ_STRATEGY"

# --- 1. the floor ---------------------------------------------------------------------------
say "latency floor (dolmen bench --probe, fsync file in the work dir)"
mkdir -p "$WORK_DIR/probe"
"$DOLMEN_BIN" bench --probe --data-dir "$WORK_DIR/probe" | tee "$WORK_DIR/probe.out"

# --- 2. etcd --------------------------------------------------------------------------------
start_etcd
say "etcd: etcd-bench"
"$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --read-strategy "$READ_STRATEGY" \
  --workload "$WORKLOADS" --clients "$CLIENTS" --duration "$DURATION" --keys "$KEYS" \
  --value-size "$VALUE_SIZE" | tee "$WORK_DIR/etcd.out"
say "etcd: stopping the members"
stop_all

# --- 3. Dolmen, 3 nodes ---------------------------------------------------------------------
say "dolmen: starting a 3-node cluster (dolmen demo, thrift ports $DOLMEN_THRIFT_PORT-$((DOLMEN_THRIFT_PORT + 2)))"
"$DOLMEN_BIN" demo --dir "$WORK_DIR/dolmen" --fresh --thrift-port "$DOLMEN_THRIFT_PORT" \
  --peer-port "$DOLMEN_PEER_PORT" --admin-port "$DOLMEN_ADMIN_PORT" >"$WORK_DIR/demo.log" 2>&1 &
PIDS+=("$!")
demo_pid=$!
deadline=$((SECONDS + READY_TIMEOUT))
until grep -q "Dolmen demo cluster:" "$WORK_DIR/demo.log"; do
  kill -0 "$demo_pid" 2>/dev/null || { cat "$WORK_DIR/demo.log" >&2; die "dolmen demo exited"; }
  [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK_DIR/demo.log" >&2; die "dolmen demo not up within ${READY_TIMEOUT}s"; }
  sleep 0.2
done
grep "node [0-9]:" "$WORK_DIR/demo.log"
dolmen_endpoints="127.0.0.1:$DOLMEN_THRIFT_PORT,127.0.0.1:$((DOLMEN_THRIFT_PORT + 1)),127.0.0.1:$((DOLMEN_THRIFT_PORT + 2))"
# The demo's children are the nodes: the bench reports their CPU per operation too.
node_pids=$(pgrep -d, -P "$demo_pid" || true)
say "dolmen: dolmen bench (node pids: ${node_pids:-unknown})"
"$DOLMEN_BIN" bench --endpoints "$dolmen_endpoints" --read-strategy "$READ_STRATEGY" \
  --workload "$WORKLOADS" --clients "$CLIENTS" --duration "$DURATION" --keys "$KEYS" \
  --value-size "$VALUE_SIZE" ${node_pids:+--server-pids "$node_pids"} | tee "$WORK_DIR/dolmen.out"
say "dolmen: stopping the cluster"
stop_all # SIGTERM to `dolmen demo`, which stops its nodes

# --- 4. Dolmen standalone -------------------------------------------------------------------
if [ "$STANDALONE" = 1 ]; then
  say "dolmen standalone: one node on port $DOLMEN_STANDALONE_PORT"
  "$DOLMEN_BIN" serve --mode standalone --port "$DOLMEN_STANDALONE_PORT" \
    --admin-port $((DOLMEN_STANDALONE_PORT + 100)) --data-dir "$WORK_DIR/standalone" \
    >"$WORK_DIR/standalone.log" 2>&1 &
  PIDS+=("$!")
  sa_pid=$!
  deadline=$((SECONDS + READY_TIMEOUT))
  until grep -q "dolmen ready:" "$WORK_DIR/standalone.log"; do
    kill -0 "$sa_pid" 2>/dev/null || { cat "$WORK_DIR/standalone.log" >&2; die "dolmen serve exited"; }
    [ "$SECONDS" -lt "$deadline" ] || die "dolmen serve not ready within ${READY_TIMEOUT}s"
    sleep 0.2
  done
  "$DOLMEN_BIN" bench --addr "127.0.0.1:$DOLMEN_STANDALONE_PORT" --workload write \
    --clients "$CLIENTS" --duration "$DURATION" --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --server-pids "$sa_pid" | tee "$WORK_DIR/standalone.out"
  stop_all
fi

# --- 5. summary -----------------------------------------------------------------------------
say "summary"
echo "--- etcd 3.4 (3 members) ---"
grep -v '^{' "$WORK_DIR/etcd.out"
echo "--- dolmen (3 nodes) ---"
grep -v '^{' "$WORK_DIR/dolmen.out"
if [ "$STANDALONE" = 1 ]; then
  echo "--- dolmen (standalone) ---"
  grep -v '^{' "$WORK_DIR/standalone.out"
fi
echo
# The JSON lines of every run, tagged with their system, as one JSON array.
runs() {
  grep -h '^{.*"workload"' "$2" | jq -c --arg system "$1" '. + {system: $system}'
}
{
  runs etcd "$WORK_DIR/etcd.out"
  runs dolmen "$WORK_DIR/dolmen.out"
  if [ "$STANDALONE" = 1 ]; then runs standalone "$WORK_DIR/standalone.out"; fi
} | jq -s . >"$WORK_DIR/runs.json"
grep '^{' "$WORK_DIR/probe.out" >"$WORK_DIR/probe.json"
JQ_DEFS='
  def run(s; w; c): map(select(.system == s and .workload == w and .clients == c)) | first;
  def ratio(a; b): if (a == null or b == null or b == 0) then "n/a"
                   else ((a / b * 100 | round) / 100 | tostring) + "x" end;
  def f(x): if x == null then "n/a" else ((x * 100 | round) / 100 | tostring) end;'
jq -r "$JQ_DEFS"'
  . as $runs |
  ( ["workload", "clients", "etcd ops/s", "dolmen ops/s", "dolmen/etcd", "etcd p50 ms", "dolmen p50 ms", "etcd p99 ms", "dolmen p99 ms"] | @tsv ),
  ( $runs | map(select(.system == "etcd")) | .[] | . as $e | ($runs | run("dolmen"; $e.workload; $e.clients)) as $d |
    [ $e.workload, $e.clients, ($e.ops_per_sec | round), ($d.ops_per_sec // 0 | round),
      ratio($d.ops_per_sec; $e.ops_per_sec), f($e.p50_ms), f($d.p50_ms), f($e.p99_ms), f($d.p99_ms) ] | @tsv )
' "$WORK_DIR/runs.json" | column -t -s "$(printf '\t')"
echo
jq -r --slurpfile probe "$WORK_DIR/probe.json" "$JQ_DEFS"'
  ($probe[0].floor_ms) as $floor |
  "issue 6 targets (Dolmen 3 nodes unless said):",
  "  32-client write >= 3x etcd:              " + ratio(run("dolmen"; "write"; 32).ops_per_sec; run("etcd"; "write"; 32).ops_per_sec),
  "  32-client linearizable read >= 2x etcd:  " + ratio(run("dolmen"; "read"; 32).ops_per_sec; run("etcd"; "read"; 32).ops_per_sec),
  "  1-client write p50 <= 1.5x the floor:    " + ratio(run("dolmen"; "write"; 1).p50_ms; $floor)
    + " (p50 " + f(run("dolmen"; "write"; 1).p50_ms) + " ms, floor " + f($floor) + " ms)",
  "  32-client txn >= write / 2:              txn/write = " + ratio(run("dolmen"; "txn"; 32).ops_per_sec; run("dolmen"; "write"; 32).ops_per_sec),
  "  standalone >= 5x 3-node write @32:       " + ratio(run("standalone"; "write"; 32).ops_per_sec; run("dolmen"; "write"; 32).ops_per_sec)
' "$WORK_DIR/runs.json"
say "done"
