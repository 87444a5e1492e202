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
THRIFT=23090
PEER=21090
ADMIN=23190 # all below the ephemeral range, where outgoing connections could hold them
# shellcheck source=scripts/demo-common.sh
. "$ROOT/scripts/demo-common.sh"

say "mutual TLS vs plaintext between peers ($CLIENTS clients, ${DURATION}s per run)"
for cycle in $(seq "$CYCLES"); do
  for mode in plaintext tls; do
    if [ "$mode" = tls ]; then start_demo "$DOLMEN_BIN"; else start_demo "$DOLMEN_BIN" --plaintext-peers; fi
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
