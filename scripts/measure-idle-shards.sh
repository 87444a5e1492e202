#!/usr/bin/env bash
# Issue 17's idle-shards figure on a release build (docs/PERFORMANCE.md, "Idle shards"): a
# 3-node `dolmen demo` cluster with SHARDS data groups and no load; after SETTLE seconds (the
# groups' hibernate_after is 10 s), the CPU time the three node processes use over WINDOW
# seconds, from /proc/<pid>/stat, as a percentage of one core; once with hibernation (the
# default) and once with `DOLMEN_SHARDING__HIBERNATE_AFTER_MS=0` (never).
# Usage: scripts/measure-idle-shards.sh
# Env: SHARDS (64), SETTLE (30), WINDOW (60), DOLMEN_BIN (release build in the shared target
# dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-idle-shards
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARDS="${SHARDS:-64}"
SETTLE="${SETTLE:-30}"
WINDOW="${WINDOW:-60}"
THRIFT=26090
PEER=21090
ADMIN=26190 # below the ephemeral range, where outgoing connections could hold them
# shellcheck source=scripts/demo-common.sh
. "$ROOT/scripts/demo-common.sh"
TICKS=$(getconf CLK_TCK)

# CPU ticks (user + system) of the demo's node processes, summed.
node_ticks() {
  local total=0 pid
  for pid in $(pgrep -P "$DEMO"); do
    # Fields 14 and 15 of /proc/<pid>/stat, after the command name in parentheses.
    read -r utime stime < <(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12, $13}')
    total=$((total + utime + stime))
  done
  echo "$total"
}

for mode in hibernating awake; do
  if [ "$mode" = awake ]; then
    export DOLMEN_SHARDING__HIBERNATE_AFTER_MS=0
  else
    unset DOLMEN_SHARDING__HIBERNATE_AFTER_MS
  fi
  say "$SHARDS idle data groups, $mode: settle ${SETTLE}s, measure ${WINDOW}s"
  start_demo "$DOLMEN_BIN" --shards "$SHARDS"
  sleep "$SETTLE"
  before=$(node_ticks)
  sleep "$WINDOW"
  after=$(node_ticks)
  echo "$mode: $SHARDS groups, 3 nodes: $(awk -v t=$((after - before)) -v hz="$TICKS" -v w="$WINDOW" \
    'BEGIN { printf "%.1f%% of one core (%d ticks at %d Hz over %d s)", 100 * t / hz / w, t, hz, w }')"
  stop_demo
  sleep 3
done
