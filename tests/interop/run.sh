#!/usr/bin/env bash
# Run the partysocket interop suite.
#
#   tests/interop/run.sh                       # against a running server: PARTY_HOST (default
#                                              # 127.0.0.1:1999), PARTY_TARGET (default partyring)
#   tests/interop/run.sh --partykit-peer [PORT]
#                                              # start loadtest/peers/partykit on PORT (default 19999),
#                                              # run with PARTY_TARGET=partykit, stop the peer
#
# Exits non-zero if any test fails. All traffic goes to loopback.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export NO_UPDATE_NOTIFIER=1
export npm_config_update_notifier=false

if [ ! -d "$HERE/node_modules/partysocket" ] || [ ! -d "$HERE/node_modules/ws" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund)
fi

run_tests() {
  echo "interop: PARTY_HOST=$PARTY_HOST PARTY_TARGET=$PARTY_TARGET" >&2
  node --test "$HERE/interop.test.mjs"
}

if [ "${1:-}" = "--partykit-peer" ]; then
  PORT="${2:-19999}"
  LOG="$(mktemp -t partykit-peer.XXXXXX.log)"
  "$ROOT/loadtest/peers/partykit/run.sh" "$PORT" >"$LOG" 2>&1 &
  PEER_PID=$!
  trap 'kill "$PEER_PID" 2>/dev/null || true; wait "$PEER_PID" 2>/dev/null || true' EXIT
  # Wait (bounded: 120 x 0.5 s) for "Ready on"; the first start may run npm ci.
  ready=0
  for _ in $(seq 1 120); do
    if grep -q "Ready on" "$LOG"; then ready=1; break; fi
    if ! kill -0 "$PEER_PID" 2>/dev/null; then break; fi
    sleep 0.5
  done
  if [ "$ready" != 1 ]; then
    echo "interop: PartyKit peer did not become ready; log:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  export PARTY_HOST="127.0.0.1:$PORT" PARTY_TARGET=partykit
  run_tests
else
  export PARTY_HOST="${PARTY_HOST:-127.0.0.1:1999}" PARTY_TARGET="${PARTY_TARGET:-partyring}"
  run_tests
fi
