#!/usr/bin/env bash
# Smoke test of the examples in examples/ (chat, auth, presence): runs each release binary on a
# free loopback port in a temporary working directory, and exercises it with curl (HTTP) and
# Node + ws (WebSockets, tests/examples/smoke.mjs).
#
#   cargo build --release --examples && bash tests/examples/run.sh
#
# Exits non-zero on the first failure; kills what it started. Takes about 5 s.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$ROOT/target/release/examples"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

for name in chat auth presence; do
  if [ ! -x "$BIN/$name" ]; then
    echo "examples: $BIN/$name is missing: run cargo build --release --examples first" >&2
    exit 1
  fi
done
if [ ! -d "$HERE/node_modules/ws" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund)
fi

WORK="$(mktemp -d -t partyring-examples.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*/*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
ok() { echo "  ok $*"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start NAME [VAR=value...]: runs example NAME in $WORK/NAME (created if need be, kept across
# restarts) on a free port; waits (at most 10 s) for its "listening on" line. Sets ADDR, PID.
start() {
  local name="$1" dir="$WORK/$1" port
  shift
  mkdir -p "$dir"
  port="$(free_port)"
  (cd "$dir" && exec env PORT="$port" "$@" "$BIN/$name") >"$dir/stdout.log" 2>"$dir/stderr.log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 100); do
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$dir/stdout.log" | head -n1 | sed 's|.*http://||')" || true
    [ -n "$ADDR" ] && return 0
    kill -0 "$PID" 2>/dev/null || fail "$name exited at start"
    sleep 0.1
  done
  fail "$name did not print 'listening on' within 10 s"
}

# stop: SIGKILL the last started example (nothing graceful: what was acknowledged must survive).
stop() {
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

# curl with a deadline; prints the body, then the status on a line of its own.
req() { curl -sS --max-time 5 -w '\n%{http_code}' "$@"; }
expect() { # expect WHAT ACTUAL WANT
  [ "$2" = "$3" ] || fail "$1: got $(printf '%q' "$2"), want $(printf '%q' "$3")"
  ok "$1"
}
smoke() { node "$HERE/smoke.mjs" "$@" || fail "node smoke.mjs $*"; }

SECONDS=0

echo "== chat"
start chat
url="http://$ADDR/parties/chat/lobby"
expect "GET empty history" "$(req "$url")" $'[]\n200'
expect "POST is 405" "$(req -X POST -d x "$url" | tail -n1)" "405"
smoke chat-send "$ADDR" lobby "hello from the smoke test" 0
expect "GET history has it" "$(req "$url")" $'[{"from":"smoke","text":"hello from the smoke test"}]\n200'
stop
start chat
smoke chat-history "$ADDR" lobby "hello from the smoke test"
ok "history survived SIGKILL + restart"
smoke chat-send "$ADDR" lobby "second" 1
ok "sequence continues after the restart"
smoke chat-send "$ADDR" lobby "third" 2
ok "sequence continues after the room was left empty"
expect "GET all three" "$(req "http://$ADDR/parties/chat/lobby" | head -n1)" \
  '[{"from":"smoke","text":"hello from the smoke test"},{"from":"smoke","text":"second"},{"from":"smoke","text":"third"}]'
[ -d "$WORK/chat/.partyring-example-chat" ] || fail "no ./.partyring-example-chat data directory"
ok "data in ./.partyring-example-chat"
stop

echo "== auth"
start auth TOKENS="secret,alice:hunter2"
url="http://$ADDR/parties/auth/lobby"
expect "GET without token: 401" "$(req "$url")" $'Missing token\n401'
expect "GET with a bad token: 401" "$(req -H 'Authorization: Bearer nope' "$url")" $'Invalid token\n401'
upgrade=(-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13'
  -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==')
expect "upgrade without token: 401" "$(req "${upgrade[@]}" "$url")" $'Missing token\n401'
expect "GET with a good token: 200" "$(req -H 'Authorization: Bearer hunter2' "$url")" \
  $'{"online":[],"you":"alice"}\n200'
expect "X-User cannot be forged" \
  "$(req -H 'Authorization: Bearer secret' -H 'X-User: mallory' "$url" | head -n1)" \
  '{"online":[],"you":"user1"}'
smoke auth "$ADDR"
stop

echo "== presence"
start presence
url="http://$ADDR/parties/presence/global"
expect "GET presence: empty" "$(req "$url")" $'{}\n200'
expect "outside POST refused" "$(req -X POST -d '{"room":"x","count":9}' "$url")" \
  $'presence is read-only\n403'
# Two rooms, preferably on different cores (the example prints where each room lives).
out="$WORK/presence/stdout.log"
core_of() { grep -o "$1 lives on core-[0-9]*" "$out" | sed 's/.*core-//'; }
pcore="$(core_of presence/global)"
ra=a rb=b
for r in b c d; do
  if [ "$(core_of "room/$r")" != "$(core_of room/a)" ]; then rb=$r; break; fi
done
smoke presence "$ADDR" "$ra" "$rb"
expect "GET presence after all closed" "$(req "$url")" $'{}\n200'
if [ "$(core_of "room/$ra")" != "$pcore" ] || [ "$(core_of "room/$rb")" != "$pcore" ]; then
  grep -q 'cross-core' "$WORK/presence/stderr.log" || fail "no cross-core presence update logged"
  ok "a room on another core than presence/global reported cross-core"
fi
if [ "$(core_of "room/$ra")" = "$pcore" ] || [ "$(core_of "room/$rb")" = "$pcore" ]; then
  grep -q 'same core' "$WORK/presence/stderr.log" || fail "no same-core presence update logged"
  ok "a room on the presence room's core reported directly"
fi
stop

echo "examples: all passed in ${SECONDS}s"
