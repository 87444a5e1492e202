#!/usr/bin/env bash
# Failover side by side with a 3-member etcd 3.4 cluster (Debian's etcd-server), loopback only
# (issue 19). Both systems get the same election timeout and heartbeat, the same write load
# (CLIENTS closed-loop writers, client i through member i mod 3, moving to the next member after
# an error, no retries) and the same fault: SIGKILL of the leader, KILLS times, the member
# restarted on its data after each. Failover = from the kill to the first write started after
# it and acknowledged; failed requests = writes that failed in between.
#   1. etcd: 3 members -> tools/etcd-bench --failover-kills FILE in the background; this script
#      finds the leader (/v3/maintenance/status), kills it, appends "<unix ns> m<i>" to FILE,
#      waits SETTLE seconds, restarts it, waits for /health, and so on; then FILE.done.
#   2. Dolmen: `dolmen bench --scenario failover` (its own 3 nodes, the same steps).
#   3. Dolmen: `dolmen bench --scenario rolling-restart` (SIGTERM each node, retrying clients).
#   4. With DOLMEN_BEFORE_BIN set: step 2 again with that build's nodes (`--server-bin`), the
#      same load generator, for a before/after comparison.
# Only processes this script started are stopped; its temp dir is removed on exit.
#
# Environment (defaults in brackets):
#   KILLS [20]  CLIENTS [8]  ELECTION_TIMEOUT_MS [1000] (heartbeats every fifth of it, on both)
#   SETTLE [3] seconds between a kill and the restart
#   VALUE_SIZE [256]  KEYS [10000]  DOLMEN_BEFORE_BIN [unset]  ONLY [unset: both; etcd | dolmen]
#   DOLMEN_BIN, DOLMEN_TARGET_DIR, ETCD_BENCH_TARGET_DIR, ETCD_CLIENT_PORT [23790],
#   ETCD_PEER_PORT [23800], WORK_DIR: as in scripts/compare-etcd.sh
# Usage: scripts/compare-failover.sh 2>&1 | tee docs/failover-baseline.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILLS="${KILLS:-20}"
CLIENTS="${CLIENTS:-8}"
ELECTION_TIMEOUT_MS="${ELECTION_TIMEOUT_MS:-1000}"
HEARTBEAT_MS=$((ELECTION_TIMEOUT_MS / 5)) # what `dolmen bench --scenario` configures
SETTLE="${SETTLE:-3}"
VALUE_SIZE="${VALUE_SIZE:-256}"
KEYS="${KEYS:-10000}"

SCRIPT=compare-failover
# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"
echo "runs: $KILLS leader kills, $CLIENTS writers, election timeout ${ELECTION_TIMEOUT_MS} ms, heartbeat ${HEARTBEAT_MS} ms"

# The index (0-2) of the member that etcd's members name as leader.
etcd_leader() {
  local i status
  for i in 0 1 2; do
    status=$(curl -fsS --max-time 2 -X POST -d '{}' \
      "http://127.0.0.1:$((ETCD_CLIENT_PORT + i))/v3/maintenance/status" 2>/dev/null) || continue
    if [ "$(jq -r '.header.member_id' <<<"$status")" = "$(jq -r '.leader' <<<"$status")" ]; then
      echo "$i"
      return 0
    fi
  done
  return 1
}

ONLY="${ONLY:-}"
: >"$WORK_DIR/etcd.out" >"$WORK_DIR/dolmen.out" >"$WORK_DIR/rolling.out"

# --- 1. etcd --------------------------------------------------------------------------------
if [ "$ONLY" != dolmen ]; then
ETCD_FLAGS="--election-timeout $ELECTION_TIMEOUT_MS --heartbeat-interval $HEARTBEAT_MS"
start_etcd
kills="$WORK_DIR/etcd-kills"
: >"$kills"
say "etcd: $KILLS leader kills under etcd-bench's put load"
"$ETCD_BENCH" --endpoints "$ETCD_ENDPOINTS" --clients "$CLIENTS" --value-size "$VALUE_SIZE" \
  --keys "$KEYS" --failover-kills "$kills" --election-timeout-ms "$ELECTION_TIMEOUT_MS" \
  --duration $((KILLS * (SETTLE + 30) + 60)) >"$WORK_DIR/etcd.out" 2>"$WORK_DIR/etcd-bench.log" &
bench_pid=$!
PIDS+=("$bench_pid")
sleep 2
for k in $(seq 1 "$KILLS"); do
  deadline=$((SECONDS + READY_TIMEOUT))
  until leader=$(etcd_leader); do
    [ "$SECONDS" -lt "$deadline" ] || die "no etcd leader within ${READY_TIMEOUT}s"
    sleep 0.1
  done
  kill -KILL "${ETCD_PIDS[leader]}"
  echo "$(date +%s%N) m$leader" >>"$kills"
  wait "${ETCD_PIDS[leader]}" 2>/dev/null || true
  echo "kill $k/$KILLS: m$leader (leader)"
  sleep "$SETTLE"
  etcd_member "$leader"
  etcd_healthy "$leader"
  sleep 1
done
touch "$kills.done"
wait "$bench_pid" || die "etcd-bench failed: $(tail -n 5 "$WORK_DIR/etcd-bench.log")"
cat "$WORK_DIR/etcd.out"
say "etcd: stopping the members"
stop_all
fi

# --- 2. and 3. Dolmen -----------------------------------------------------------------------
if [ "$ONLY" != etcd ]; then
say "dolmen: $KILLS leader kills (dolmen bench --scenario failover)"
"$DOLMEN_BIN" bench --scenario failover --kills "$KILLS" --clients "$CLIENTS" \
  --election-timeout-ms "$ELECTION_TIMEOUT_MS" --value-size "$VALUE_SIZE" --keys "$KEYS" \
  | tee "$WORK_DIR/dolmen.out"
say "dolmen: rolling restart (dolmen bench --scenario rolling-restart)"
"$DOLMEN_BIN" bench --scenario rolling-restart --clients "$CLIENTS" \
  --election-timeout-ms "$ELECTION_TIMEOUT_MS" --value-size "$VALUE_SIZE" --keys "$KEYS" \
  | tee "$WORK_DIR/rolling.out"

if [ -n "${DOLMEN_BEFORE_BIN:-}" ]; then
  say "dolmen before ($DOLMEN_BEFORE_BIN): $KILLS leader kills"
  "$DOLMEN_BIN" bench --scenario failover --kills "$KILLS" --clients "$CLIENTS" \
    --election-timeout-ms "$ELECTION_TIMEOUT_MS" --value-size "$VALUE_SIZE" --keys "$KEYS" \
    --server-bin "$DOLMEN_BEFORE_BIN" | tee "$WORK_DIR/before.out"
fi
fi

say "summary"
grep -v '^{' "$WORK_DIR/etcd.out"
grep -v '^{' "$WORK_DIR/dolmen.out"
grep -v '^{' "$WORK_DIR/rolling.out"
if [ -n "${DOLMEN_BEFORE_BIN:-}" ]; then
  echo "(before)"
  grep -v '^{' "$WORK_DIR/before.out"
fi
say "done"
