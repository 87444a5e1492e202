# Shared by the scripts that measure a 3-node `dolmen demo` cluster (sourced, not run):
# scripts/measure-peer-tls.sh and scripts/measure-forwarding.sh. The work directory, building
# dolmen when missing, starting a fresh demo, and stopping it (only the demo this script
# started). The caller sets SCRIPT (its name), ROOT (the repository) and THRIFT, PEER and ADMIN
# (the demo's first ports) before sourcing this file.

TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dolmen/target}"
DOLMEN_BIN="${DOLMEN_BIN:-$TARGET_DIR/release/dolmen}"
ENDPOINTS="127.0.0.1:$THRIFT,127.0.0.1:$((THRIFT + 1)),127.0.0.1:$((THRIFT + 2))"
if [ -n "${WORK_DIR:-}" ]; then mkdir -p "$WORK_DIR"; OWN=0; else WORK_DIR="$(mktemp -d)"; OWN=1; fi
DEMO=""

say() { printf '\n=== %s (%s; load average %s)\n' "$*" "$(date -u +%H:%M:%SZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }

# Stops the demo: SIGTERM (the demo stops its nodes), at most 30 s, then SIGKILL to its
# process group; only the demo this script started.
stop_demo() {
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

# measured_bins [BASELINE_BIN]: sets BINS to "new=$DOLMEN_BIN", after "baseline=BASELINE_BIN"
# when one is given (measured side by side in the same run); exits 2 if it is not executable.
measured_bins() {
  BINS=("new=$DOLMEN_BIN")
  [ -z "${1:-}" ] && return 0
  if [ ! -x "$1" ]; then
    echo "$SCRIPT: baseline binary '$1' is not executable" >&2
    exit 2
  fi
  BINS=("baseline=$1" "${BINS[@]}")
}

# start_demo BIN [DEMO FLAGS...]: a fresh 3-node cluster of BIN on the caller's ports, in its
# own process group; returns once it prints its console address.
start_demo() {
  local bin="$1"
  shift
  setsid "$bin" demo --fresh --dir "$WORK_DIR/demo" --thrift-port "$THRIFT" \
    --peer-port "$PEER" --admin-port "$ADMIN" "$@" >"$WORK_DIR/demo.out" 2>&1 &
  DEMO=$!
  for _ in $(seq 600); do grep -q '^Console:' "$WORK_DIR/demo.out" && return 0; sleep 0.1; done
  cat "$WORK_DIR/demo.out" >&2
  exit 1
}
