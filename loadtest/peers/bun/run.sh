#!/usr/bin/env bash
# Run the Bun peer (Bun.serve + uWebSockets pub/sub) on 127.0.0.1:PORT.
# Usage: loadtest/peers/bun/run.sh [PORT]   (default 1999)
# Prints "bun <version> listening on http://127.0.0.1:PORT" when it accepts connections.
# BUN_PER_MESSAGE_DEFLATE=1: permessage-deflate on, publishes compressed (see server.ts).
set -euo pipefail
PORT="${1:-1999}"
cd "$(dirname "$0")"
export NO_UPDATE_NOTIFIER=1
export npm_config_update_notifier=false
if [ ! -x node_modules/.bin/bun ]; then
  npm ci --no-audit --no-fund
fi
exec ./node_modules/.bin/bun server.ts "$PORT"
