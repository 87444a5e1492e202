#!/usr/bin/env bash
# Issue 18's mutual-TLS figures on a release build (docs/PERFORMANCE.md, "Mutual TLS between
# peers"): `dolmen bench` against a 3-node `dolmen demo` cluster whose peers speak mutual TLS
# (the demo's default) and against one whose peers speak plaintext (`--plaintext-peers`), CYCLES
# times each, alternating. Writes cross the peer port (the leader replicates each to two
# followers); linearizable reads on the leader send a heartbeat round over it.
# Env: DURATION (15), CLIENTS (32), CYCLES (2), DOLMEN_BIN (release build in the shared target
# dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-peer-tls
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-32}"
CYCLES="${CYCLES:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}"
DOLMEN_BIN="${DOLMEN_BIN:-$TARGET_DIR/release/dolmen}"
THRIFT=23090
PEER=21090
ADMIN=23190 # all below the ephemeral range, where outgoing connections could hold them
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

# start_demo MODE: a fresh 3-node cluster, peers over mutual TLS ("tls") or plaintext.
start_demo() {
  local flag=""
  [ "$1" = tls ] || flag="--plaintext-peers"
  setsid "$DOLMEN_BIN" demo --fresh --dir "$WORK_DIR/demo" --thrift-port "$THRIFT" \
    --peer-port "$PEER" --admin-port "$ADMIN" $flag >"$WORK_DIR/demo.out" 2>&1 &
  DEMO=$!
  for _ in $(seq 600); do grep -q '^Console:' "$WORK_DIR/demo.out" && return 0; sleep 0.1; done
  cat "$WORK_DIR/demo.out" >&2
  exit 1
}

say "mutual TLS vs plaintext between peers ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  for mode in plaintext tls; do
    start_demo "$mode"
    if [ "$mode" = tls ]; then
      grep -q 'ca_file = ".*ca.pem"' "$WORK_DIR/demo/node-0.toml" || { echo "$SCRIPT: no [tls] in the demo's config" >&2; exit 1; }
    fi
    for workload in write read; do
      line=$("$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --keys 100000 --workload "$workload" \
        --clients "$CLIENTS" --duration "$DURATION" 2>/dev/null | grep -E "^ *$workload" | head -n 1)
      echo "cycle $cycle, $mode: $line"
    done
    stop_demo
    sleep 3 # the nodes' listeners close as their processes exit
  done
done
