# Shared by scripts/compare-etcd.sh and scripts/compare-failover.sh (sourced, not run): the work
# directory, stopping only the processes the script started, the prerequisites (etcd-server,
# curl, jq, column; tools/etcd-bench built with a vendored protoc; a release dolmen), and a
# 3-member etcd cluster on loopback. The caller sets SCRIPT (its name, for messages) and the
# variables documented in its own header before sourcing this file.

# Defaults both scripts share (each documents them in its header).
DOLMEN_TARGET_DIR="${DOLMEN_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}}"
DOLMEN_BIN="${DOLMEN_BIN:-$DOLMEN_TARGET_DIR/release/dolmen}"
ETCD_BENCH_TARGET_DIR="${ETCD_BENCH_TARGET_DIR:-$HOME/.cache/dolmen/etcd-bench-target}"
ETCD_CLIENT_PORT="${ETCD_CLIENT_PORT:-23790}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-23800}"
READY_TIMEOUT=60 # seconds to wait for a cluster or node to come up
STOP_TIMEOUT=15  # seconds from SIGTERM to SIGKILL

say() { printf '\n=== %s (%s; load average %s)\n' "$*" "$(date -u +%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
die() { echo "$SCRIPT: $*" >&2; exit 1; }

if [ -n "${WORK_DIR:-}" ]; then
  mkdir -p "$WORK_DIR"
  OWN_WORK_DIR=0
else
  WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/$SCRIPT.XXXXXX")"
  OWN_WORK_DIR=1
fi
PIDS=() # every process this script started and has not yet stopped

# Stops one process this script started: SIGTERM, a bounded wait, then SIGKILL.
stop_pid() {
  local pid="$1" waited=0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$SCRIPT: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do
    stop_pid "$pid"
  done
  PIDS=()
}

cleanup() {
  local rc=$?
  stop_all
  if [ "$OWN_WORK_DIR" = 1 ]; then
    rm -rf "$WORK_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites --------------------------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  echo "$SCRIPT: installing $* with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"
}
command -v etcd >/dev/null 2>&1 || apt_install etcd-server
command -v curl >/dev/null 2>&1 || apt_install curl
command -v jq >/dev/null 2>&1 || apt_install jq
command -v column >/dev/null 2>&1 || apt_install bsdextrautils

# etcd-client's build script needs protoc: the vendored one from crates.io (as crates/raft
# does), else one on PATH, else Debian's.
(cd "$ROOT/tools/etcd-bench" && cargo fetch --quiet)
if [ -z "${PROTOC:-}" ]; then
  PROTOC="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/protoc-bin-vendored-linux-x86_64-*/bin/protoc 2>/dev/null | tail -n 1 || true)"
  [ -n "$PROTOC" ] || PROTOC="$(command -v protoc || true)"
  if [ -z "$PROTOC" ]; then
    apt_install protobuf-compiler
    PROTOC="$(command -v protoc)"
  fi
fi
export PROTOC
echo "$SCRIPT: building tools/etcd-bench (release) in $ETCD_BENCH_TARGET_DIR"
CARGO_TARGET_DIR="$ETCD_BENCH_TARGET_DIR" cargo build --release --quiet \
  --manifest-path "$ROOT/tools/etcd-bench/Cargo.toml"
ETCD_BENCH="$ETCD_BENCH_TARGET_DIR/release/etcd-bench"
if [ ! -x "$DOLMEN_BIN" ]; then
  echo "$SCRIPT: building dolmen (release) in $DOLMEN_TARGET_DIR (the first build compiles RocksDB)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$DOLMEN_TARGET_DIR" cargo build --release --quiet --workspace)
  DOLMEN_BIN="$DOLMEN_TARGET_DIR/release/dolmen"
fi

say "$SCRIPT: $(etcd --version | head -n 1), dolmen at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) cores, $(uname -r); work dir $WORK_DIR on $(df --output=source "$WORK_DIR" | tail -n 1)"

# Starts etcd member i (m0..m2) on its ports and data dir, new or again after a kill (an
# existing data dir ignores the initial-cluster flags); ETCD_FLAGS adds flags (timeouts).
# Records its pid in ETCD_PIDS[i] and PIDS.
ETCD_PIDS=()
ETCD_INITIAL_CLUSTER=""
ETCD_ENDPOINTS=""
for i in 0 1 2; do
  ETCD_INITIAL_CLUSTER+="${ETCD_INITIAL_CLUSTER:+,}m$i=http://127.0.0.1:$((ETCD_PEER_PORT + i))"
  ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}http://127.0.0.1:$((ETCD_CLIENT_PORT + i))"
done
etcd_member() {
  local i="$1" cport=$((ETCD_CLIENT_PORT + $1)) pport=$((ETCD_PEER_PORT + $1))
  # shellcheck disable=SC2086 # ETCD_FLAGS is a list of flags
  etcd --name "m$i" --data-dir "$WORK_DIR/etcd/m$i" ${ETCD_FLAGS:-} \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$ETCD_INITIAL_CLUSTER" --initial-cluster-token "$SCRIPT" \
    --initial-cluster-state new >>"$WORK_DIR/etcd-m$i.log" 2>&1 &
  ETCD_PIDS[i]=$!
  PIDS+=("$!")
}

# Waits until member i answers /health with "health":"true".
etcd_healthy() {
  local i="$1" deadline=$((SECONDS + READY_TIMEOUT))
  until curl -fsS --max-time 2 "http://127.0.0.1:$((ETCD_CLIENT_PORT + i))/health" 2>/dev/null | grep -q '"health":"true"'; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$WORK_DIR/etcd-m$i.log" >&2
      die "etcd member m$i not healthy within ${READY_TIMEOUT}s"
    fi
    sleep 0.2
  done
}

# Starts the three members and waits until each is healthy.
start_etcd() {
  say "etcd: starting 3 members (client ports $ETCD_CLIENT_PORT-$((ETCD_CLIENT_PORT + 2)))"
  local i
  for i in 0 1 2; do etcd_member "$i"; done
  for i in 0 1 2; do etcd_healthy "$i"; done
  echo "etcd cluster healthy: $ETCD_ENDPOINTS"
}
