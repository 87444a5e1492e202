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
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}"
DOLMEN_BIN="${DOLMEN_BIN:-$TARGET_DIR/release/dolmen}"
BASELINE_BIN="${1:-}"
THRIFT=24090
PEER=22090
ADMIN=24190 # all below the ephemeral range, where outgoing connections could hold them
ENDPOINTS="127.0.0.1:$THRIFT,127.0.0.1:$((THRIFT + 1)),127.0.0.1:$((THRIFT + 2))"
if [ -n "${WORK_DIR:-}" ]; then mkdir -p "$WORK_DIR"; OWN=0; else WORK_DIR="$(mktemp -d)"; OWN=1; fi
DEMO=""

say() { printf '\n=== %s (%s; load average %s)\n' "$*" "$(date -u +%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
stop_demo() { # SIGTERM (the demo stops its nodes), at most 30 s, then SIGKILL; only ours
  [ -n "$DEMO" ] || return 0
  local waited=0
  kill -TERM "$DEMO" 2>/dev/null || true
  while kill -0 "$DEMO" 2>/dev/null && [ "$waited" -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL -- "-$DEMO" 2>/dev/null || true
  wait "$DEMO" 2>/dev/null || true
  DEMO=""
}
cleanup() {
  local rc=$?
  stop_demo
  [ "$OWN" = 1 ] && rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$DOLMEN_BIN" ]; then
  echo "$SCRIPT: building dolmen (release) in $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --workspace)
fi
if [ -n "$BASELINE_BIN" ] && [ ! -x "$BASELINE_BIN" ]; then
  echo "$SCRIPT: baseline binary '$BASELINE_BIN' is not executable" >&2
  exit 2
fi

# start_demo BIN: a fresh 3-node cluster of BIN.
start_demo() {
  setsid "$1" demo --fresh --dir "$WORK_DIR/demo" --thrift-port "$THRIFT" \
    --peer-port "$PEER" --admin-port "$ADMIN" >"$WORK_DIR/demo.out" 2>&1 &
  DEMO=$!
  for _ in $(seq 600); do grep -q '^Console:' "$WORK_DIR/demo.out" && return 0; sleep 0.1; done
  cat "$WORK_DIR/demo.out" >&2
  exit 1
}

BINS=("new=$DOLMEN_BIN")
[ -n "$BASELINE_BIN" ] && BINS=("baseline=$BASELINE_BIN" "${BINS[@]}")
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
