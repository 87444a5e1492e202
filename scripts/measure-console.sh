#!/usr/bin/env bash
# Issue 21's figures on a release build (docs/PERFORMANCE.md, "The console"), in one run:
#   1. the console's requests answered by a 3-node cluster holding KEYS keys while 32 clients
#      write: each endpoint the page polls, and the data browser's reads, ROUNDS times each,
#      timed with curl (p50 and max);
#   2. what an open console costs the write path: `dolmen bench` writes (and reads) at 32 clients
#      for DURATION seconds with no browser and with a headless Chromium showing the console's
#      metrics page on the leader, CYCLES times each, alternating.
# Env: KEYS (1000000), DURATION (15), ROUNDS (20), CYCLES (3), DOLMEN_BIN (release build in the shared target
# dir; built when missing), CHROMIUM (chromium), WORK_DIR (a temp dir, deleted at the end unless
# given). Needs curl and Debian's chromium (scripts/install-deps.sh installs it).
set -euo pipefail
SCRIPT=measure-console
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEYS="${KEYS:-1000000}"
DURATION="${DURATION:-15}"
ROUNDS="${ROUNDS:-20}"
CYCLES="${CYCLES:-3}"
CHROMIUM="${CHROMIUM:-chromium}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}"
DOLMEN_BIN="${DOLMEN_BIN:-$TARGET_DIR/release/dolmen}"
THRIFT=25090
PEER=22090
ADMIN=25190
ENDPOINTS="127.0.0.1:$THRIFT,127.0.0.1:$((THRIFT + 1)),127.0.0.1:$((THRIFT + 2))"
if [ -n "${WORK_DIR:-}" ]; then mkdir -p "$WORK_DIR"; OWN=0; else WORK_DIR="$(mktemp -d)"; OWN=1; fi
PIDS=()

say() { printf '\n=== %s (%s; load average %s)\n' "$*" "$(date -u +%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
stop_pid() { # SIGTERM to the process group, at most 30 s, then SIGKILL; only groups this script started
  local pid="$1" waited=0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do [ -n "$pid" ] && stop_pid "$pid"; done
  [ "$OWN" = 1 ] && rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v curl >/dev/null || { echo "$SCRIPT: needs curl" >&2; exit 1; }
command -v "$CHROMIUM" >/dev/null || { echo "$SCRIPT: needs $CHROMIUM (scripts/install-deps.sh)" >&2; exit 1; }
if [ ! -x "$DOLMEN_BIN" ]; then
  echo "$SCRIPT: building dolmen (release) in $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --workspace)
fi

say "a 3-node cluster (dolmen demo, release) with $KEYS keys"
setsid "$DOLMEN_BIN" demo --fresh --dir "$WORK_DIR/demo" --thrift-port "$THRIFT" --peer-port "$PEER" \
  --admin-port "$ADMIN" >"$WORK_DIR/demo.out" 2>&1 &
PIDS+=("$!")
for _ in $(seq 600); do grep -q '^Console:' "$WORK_DIR/demo.out" && break; sleep 0.1; done
grep -q '^Console:' "$WORK_DIR/demo.out" || { cat "$WORK_DIR/demo.out" >&2; exit 1; }
TOKEN="$(cat "$WORK_DIR/demo/admin-token")"
started=$(date +%s.%N)
"$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --keys "$KEYS" --workload read --clients 1 --ops 1 >/dev/null
echo "loaded $KEYS keys in $(echo "$(date +%s.%N) - $started" | bc) s"
leader=$(curl -sf "127.0.0.1:$ADMIN/status" | sed -n 's/.*"leader":\([0-9]*\).*/\1/p')
LEADER_ADMIN="127.0.0.1:$((ADMIN + leader))"
echo "leader: node $leader, admin $LEADER_ADMIN"

# time_path PATH [AUTH]: ROUNDS requests; prints p50 and max in ms.
time_path() {
  local path="$1" t times=()
  for _ in $(seq "$ROUNDS"); do
    t=$(curl -s -o /dev/null -w '%{time_total}' -m 10 -H "Authorization: Bearer $TOKEN" "http://$LEADER_ADMIN$path")
    times+=("$(echo "$t * 1000" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" '{a[NR]=$1} END {printf "  %-44s p50 %7.2f ms   max %7.2f ms\n", p, a[int((NR+1)/2)], a[NR]}'
}

say "1. the console's requests, $ROUNDS each, while 32 clients write"
"$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --keys "$KEYS" --no-preload --workload write \
  --clients 32 --duration 60 >/dev/null 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
sleep 2
for path in /status /cluster/status /console/series /console/info /config /metrics \
  "/data/range?limit=50" "/data/range?limit=500" "/data/range?prefix=bench/000000500&limit=50" \
  "/data/range?start=bench/000000500000&limit=50&after=bench/000000500100" \
  "/data/key?key=bench/000000777777"; do
  time_path "$path"
done
stop_pid "$LOAD"
PIDS=("${PIDS[@]/$LOAD}")

say "2. the write path with no console and with one open (32 clients, ${DURATION}s each)"
for round in $(seq "$CYCLES"); do
  for mode in "no console" "console open"; do
    browser=""
    if [ "$mode" = "console open" ]; then
      setsid "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$WORK_DIR/chromium" --window-size=1280,900 \
        --remote-debugging-port=0 "http://$LEADER_ADMIN/#metrics" >/dev/null 2>&1 &
      browser=$!
      PIDS+=("$browser")
      sleep 3
    fi
    for workload in write read; do
      line=$("$DOLMEN_BIN" bench --endpoints "$ENDPOINTS" --keys "$KEYS" --no-preload \
        --workload "$workload" --clients 32 --duration "$DURATION" 2>/dev/null | grep -E "^ *$workload" | head -n 1)
      echo "round $round, $mode: $line"
    done
    if [ -n "$browser" ]; then
      stop_pid "$browser"
      PIDS=("${PIDS[@]/$browser}")
    fi
  done
done
