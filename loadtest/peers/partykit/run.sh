#!/usr/bin/env bash
# Run the reference PartyKit peer under `partykit dev` (offline-capable).
# Usage: loadtest/peers/partykit/run.sh [PORT]   (default 1999)
# partykit dev binds 0.0.0.0; send test traffic to 127.0.0.1:PORT only.
# Prints "Ready on http://0.0.0.0:PORT" when it accepts connections.
set -euo pipefail
PORT="${1:-1999}"
cd "$(dirname "$0")"
export NO_UPDATE_NOTIFIER=1
export npm_config_update_notifier=false
if [ ! -d node_modules/partykit ]; then
  npm ci --no-audit --no-fund
fi
# --persist false: in-memory rooms, so every start is a clean oracle.
exec ./node_modules/.bin/partykit dev \
  --port "$PORT" \
  --disable-request-cf-fetch \
  --no-hotkeys \
  --persist false
