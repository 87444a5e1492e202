#!/usr/bin/env bash
# Issue 20's figures on a release build (docs/PERFORMANCE.md, "RocksDB tuning" and "Backup,
# restore and import"), all in one run on this machine:
#   1. what [compression] does: the same KEYS text-like values loaded into a standalone node with
#      no compression, lz4 and zstd at every level; load time and SST bytes after a clean stop;
#   2. backup and restore throughput (MB/s of record bytes, keys/s) of the zstd node's data,
#      beside the disk's sequential read rate (dd, O_DIRECT);
#   3. what a running backup costs a write load: `dolmen bench` writes at 32 clients for DURATION
#      seconds alone, with back-to-back backups, and with back-to-back backups limited to
#      RATE_MB MB/s (`--max-rate-mb`), twice each, alternating.
# Env: KEYS (1000000), VALUE_SIZE (200), DURATION (15), DOLMEN_BIN (release build in the shared
# target dir; built when missing), WORK_DIR (a temp dir, deleted at the end unless given).
set -euo pipefail
SCRIPT=measure-backup
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEYS="${KEYS:-1000000}"
VALUE_SIZE="${VALUE_SIZE:-200}"
DURATION="${DURATION:-15}"
RATE_MB="${RATE_MB:-20}"
TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}"
DOLMEN_BIN="${DOLMEN_BIN:-$TARGET_DIR/release/dolmen}"
PORT=29090
ADMIN=29190
if [ -n "${WORK_DIR:-}" ]; then mkdir -p "$WORK_DIR"; OWN=0; else WORK_DIR="$(mktemp -d)"; OWN=1; fi
PIDS=()

say() { printf '\n=== %s (%s; load average %s)\n' "$*" "$(date -u +%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
stop_pid() { # SIGTERM, at most 30 s, then SIGKILL; only processes this script started
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  [ "$OWN" = 1 ] && rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -x "$DOLMEN_BIN" ]; then
  echo "$SCRIPT: building dolmen (release) in $TARGET_DIR"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release --quiet --workspace)
fi

# start_node NAME EXTRA_TOML: a standalone node on $PORT/$ADMIN with data in $WORK_DIR/NAME.
NODE_PID=""
start_node() {
  local name="$1" extra="$2" waited=0
  mkdir -p "$WORK_DIR/$name"
  cat >"$WORK_DIR/$name.toml" <<EOF
[server]
port = $PORT
admin_port = $ADMIN
[database]
base_path = "$WORK_DIR/$name"
[mvcc]
retention_window_ms = 5000
$extra
EOF
  "$DOLMEN_BIN" serve --config "$WORK_DIR/$name.toml" >"$WORK_DIR/$name.log" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  until grep -q "dolmen ready" "$WORK_DIR/$name.log"; do
    sleep 0.1
    waited=$((waited + 1))
    [ "$waited" -lt 600 ] || { echo "$SCRIPT: $name did not start:"; tail "$WORK_DIR/$name.log"; exit 1; }
  done
}
stop_node() { stop_pid "$NODE_PID"; PIDS=("${PIDS[@]/$NODE_PID}"); }
sst_bytes() { find "$1" -name '*.sst' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

say "$SCRIPT: dolmen at $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores, $(uname -r), work dir on $(df --output=source "$WORK_DIR" | tail -n 1)"
echo "$KEYS keys, $VALUE_SIZE-byte text values (bench --values text)"

say "1. compression: load time and SST bytes"
printf '%-6s %10s %14s\n' codec load_s sst_bytes
for codec in none lz4 zstd; do
  start_node "$codec" "[compression]
l0_compression = \"$codec\"
l1_compression = \"$codec\"
bottom_compression = \"$codec\""
  started=$(date +%s.%N)
  "$DOLMEN_BIN" bench --addr "127.0.0.1:$PORT" --keys "$KEYS" --value-size "$VALUE_SIZE" \
    --values text --workload read --clients 1 --ops 1 >/dev/null
  load=$(echo "$(date +%s.%N) - $started" | bc)
  stop_node
  printf '%-6s %10.1f %14d\n' "$codec" "$load" "$(sst_bytes "$WORK_DIR/$codec")"
done

say "2. backup and restore of the zstd node's data"
start_node zstd ""
rm -rf "$WORK_DIR/backup"
"$DOLMEN_BIN" backup --admin "127.0.0.1:$ADMIN" --out "$WORK_DIR/backup"
stop_node
"$DOLMEN_BIN" restore --from "$WORK_DIR/backup" --data-dir "$WORK_DIR/restored"
echo "disk sequential read (dd, 1 GiB, O_DIRECT):"
dd if=/dev/zero of="$WORK_DIR/dd.bin" bs=4M count=256 conv=fsync status=none
dd if="$WORK_DIR/dd.bin" of=/dev/null bs=4M iflag=direct 2>&1 | tail -n 1
rm -f "$WORK_DIR/dd.bin"

say "3. a write load alone and with back-to-back backups (32 clients, ${DURATION}s each)"
start_node zstd ""
for round in 1 2; do
  for mode in alone backups "backups@${RATE_MB}MB/s"; do
    loop_pid=""
    if [ "$mode" != alone ]; then
      rate=0
      [ "$mode" = backups ] || rate="$RATE_MB"
      rm -f "$WORK_DIR/loop-count"
      (i=0; while :; do rm -rf "$WORK_DIR/loop"; "$DOLMEN_BIN" backup --admin "127.0.0.1:$ADMIN" --max-rate-mb "$rate" --out "$WORK_DIR/loop" >/dev/null 2>&1 || true; i=$((i + 1)); echo "$i" >"$WORK_DIR/loop-count"; done) &
      loop_pid=$!
      PIDS+=("$loop_pid")
    fi
    line=$("$DOLMEN_BIN" bench --addr "127.0.0.1:$PORT" --keys "$KEYS" --value-size "$VALUE_SIZE" \
      --values text --no-preload --workload write --clients 32 --duration "$DURATION" 2>/dev/null | grep -E '^ *write' | head -n 1)
    if [ -n "$loop_pid" ]; then
      kill -TERM "$loop_pid" 2>/dev/null || true; wait "$loop_pid" 2>/dev/null || true
      PIDS=("${PIDS[@]/$loop_pid}")
      mode="$mode ($(cat "$WORK_DIR/loop-count" 2>/dev/null || echo 0) finished)"
    fi
    echo "round $round, $mode: $line"
  done
done
stop_node
