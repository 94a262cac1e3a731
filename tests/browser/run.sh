#!/usr/bin/env bash
# Browser test of the demo page (`GET /`): starts a release partyring on a free loopback port,
# then runs browser.test.mjs (node's test runner) with Debian's Chromium driven by
# playwright-core, and saves tests/browser/screenshot.png (not committed).
#
#   cargo build --release && bash tests/browser/run.sh
#
# Environment: PARTYRING_BIN (default target/release/partyring), CHROMIUM (default: `chromium`
# on PATH; install it with `apt-get install -y chromium`), SCREENSHOT (default
# tests/browser/screenshot.png). Exits non-zero on any failure. All traffic is loopback; the
# server, the browser and the temporary directory are gone when it exits.
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
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The server runs in the temporary directory, so any data files it writes land there.
(cd "$WORK" && exec "$BIN" --port 0 --threads 2) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ADDR=""
for _ in $(seq 1 100); do # at most 10 s
  ADDR="$(grep -o 'listening on http://[0-9.:]*' "$WORK/server.log" | head -n1 | sed 's|.*http://||')" || true
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  echo "browser: the server did not start; its log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi
echo "browser: partyring at http://$ADDR, $("$CHROMIUM" --version 2>/dev/null || echo chromium)" >&2

status=0
PARTY_ADDR="$ADDR" CHROMIUM="$CHROMIUM" SCREENSHOT="${SCREENSHOT:-$HERE/screenshot.png}" \
  timeout --kill-after=10 120 node --test --test-reporter=spec "$HERE/browser.test.mjs" || status=$?
if [ "$status" != 0 ]; then
  echo "browser: FAILED (exit $status); server log:" >&2
  tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
