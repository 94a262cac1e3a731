#!/usr/bin/env bash
# Browser tests, run by node's test runner with Debian's Chromium driven by playwright-core:
# - browser.test.mjs: the demo page (`GET /`) of a release partyring on a free loopback port;
#   saves tests/browser/screenshot.png (not committed);
# - editor.test.mjs: the collaborative editor example (examples/editor, Yjs), served by a second
#   partyring with `--serve examples/editor`; saves tests/browser/editor.png (not committed).
#
#   cargo build --release && bash tests/browser/run.sh
#
# Environment: PARTYRING_BIN (default target/release/partyring), CHROMIUM (default: `chromium`
# on PATH; install it with `apt-get install -y chromium`), SCREENSHOT (default
# tests/browser/screenshot.png; EDITOR_SCREENSHOT, default tests/browser/editor.png). Exits
# non-zero on any failure. All traffic is loopback; the servers, the browsers and the temporary
# directory are gone when it exits.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
if [ ! -x "$BIN" ]; then
  echo "browser: no server binary at $BIN (cargo build --release, or set PARTYRING_BIN)" >&2
  exit 1
fi
CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
if [ -z "$CHROMIUM" ] || [ ! -x "$CHROMIUM" ]; then
  echo "browser: Chromium not found (apt-get install -y chromium, or set CHROMIUM)" >&2
  exit 1
fi
if [ ! -d "$HERE/node_modules/playwright-core" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund)
fi

WORK="$(mktemp -d -t partyring-browser.XXXXXX)"
SERVER_PIDS=()
cleanup() {
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_server NAME [FLAGS...]: starts the server in $WORK/NAME (so any data files it writes land
# there, one directory per server), logging to $WORK/NAME.log; sets ADDR to its host:port.
start_server() {
  local name="$1" pid
  shift
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec "$BIN" --port 0 --threads 2 "$@") >"$WORK/$name.log" 2>&1 &
  pid=$!
  SERVER_PIDS+=("$pid")
  ADDR=""
  for _ in $(seq 1 100); do # at most 10 s
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$WORK/$name.log" | head -n1 | sed 's|.*http://||')" || true
    [ -n "$ADDR" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "browser: the $name server did not start; its log:" >&2
  cat "$WORK/$name.log" >&2
  return 1
}

start_server demo
DEMO_ADDR="$ADDR"
start_server editor --serve "$ROOT/examples/editor"
EDITOR_ADDR="$ADDR"
echo "browser: demo at http://$DEMO_ADDR, editor at http://$EDITOR_ADDR," \
  "$("$CHROMIUM" --version 2>/dev/null || echo chromium)" >&2

status=0
# One test file at a time: each starts its own Chromium, and the machine may have two cores.
PARTY_ADDR="$DEMO_ADDR" EDITOR_ADDR="$EDITOR_ADDR" CHROMIUM="$CHROMIUM" \
  SCREENSHOT="${SCREENSHOT:-$HERE/screenshot.png}" \
  EDITOR_SCREENSHOT="${EDITOR_SCREENSHOT:-$HERE/editor.png}" \
  timeout --kill-after=10 240 node --test --test-concurrency=1 --test-reporter=spec \
  "$HERE/browser.test.mjs" "$HERE/editor.test.mjs" || status=$?
if [ "$status" != 0 ]; then
  echo "browser: FAILED (exit $status); server logs:" >&2
  for name in demo editor; do
    echo "--- $name" >&2
    tail -n 50 "$WORK/$name.log" >&2
  done
fi
exit "$status"
