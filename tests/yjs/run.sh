#!/usr/bin/env bash
# The Yjs interop suite: the real `yjs`, `y-partykit/provider` (YPartyKitProvider over `ws`)
# and `y-protocols` clients against the `yjs` party.
#
#   tests/yjs/run.sh              # partyring: target/release/partyring (built if missing),
#                                 # started and restarted by the test itself on port 0
#   tests/yjs/run.sh --partykit   # the same tests against `partykit dev` running a y-partykit
#                                 # server (tests/yjs/partykit/), on PARTYKIT_PORT (19998)
#
# Installs its npm packages from the lock file when they are missing. Exits non-zero if any
# test fails. All traffic goes to loopback.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

if [ ! -d "$HERE/node_modules/y-partykit" ] || [ ! -d "$HERE/node_modules/lib0" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund)
fi

if [ "${1:-}" = "--partykit" ]; then
  if [ ! -d "$HERE/partykit/node_modules/partykit" ]; then
    (cd "$HERE/partykit" && npm ci --no-audit --no-fund)
  fi
  export YJS_TARGET=partykit
else
  if [ ! -x "$ROOT/target/release/partyring" ]; then
    (cd "$ROOT" && cargo build --release)
  fi
  export YJS_TARGET=partyring
  export PARTYRING_BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
fi
echo "yjs: YJS_TARGET=$YJS_TARGET" >&2
# Bounded: a hung server or client fails the run instead of stalling CI.
timeout 600 node --test --test-force-exit "$HERE/yjs.test.mjs"
