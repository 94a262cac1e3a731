#!/usr/bin/env bash
# Party-to-party fetches across nodes (--fetch-entry): 3 nodes of the `presence` example on
# loopback, each with PARTYRING_FETCH_ENTRY = the nginx in front of them (deploy/nginx-scaleout.conf,
# consistent hash on party + room), so a `room` room's fetch of presence/global goes through
# nginx to the one node that owns presence/global, whichever node the room lives on.
#
#   bash tests/deploy/scaleout-fetch.sh   # from the repo root, after cargo build --release
#                                         # --examples; PRESENCE_BIN (default
#                                         # ./target/release/examples/presence) is the server
#
# The nginx port is chosen first (the nodes must know it when they start), then the nodes
# (PORT=0: each binds a free port and prints it), then nginx on that port. The checks are in
# scaleout-fetch-client.mjs: 12 `room` rooms, 4 on each node (found by nginx's routing), get
# WebSocket clients through nginx; GET presence/global through nginx shows every room's count,
# only its owner node holds them, each update left its room's node and reached the owner
# through nginx (node logs, nginx access log), 8 of the 12 across nodes; closing the sockets
# lowers the counts to {}. An outside POST to presence/global gets 403 (on_before_request).
# Installs nginx (and curl) with apt-get when missing. Exits non-zero on any failure. Listens
# and connects on 127.0.0.1 only; everything it starts is stopped on exit. Takes ~3 s.
TEST_NAME=scaleout-fetch # read by lib.sh
# shellcheck source=tests/deploy/lib.sh disable=SC2034
source "$(dirname "$0")/lib.sh"
ensure_node_modules

PRESENCE_BIN="${PRESENCE_BIN:-./target/release/examples/presence}"
[ -x "$PRESENCE_BIN" ] || fail "no presence example at $PRESENCE_BIN (cargo build --release --examples, or set PRESENCE_BIN)"
cp "$PRESENCE_BIN" "$WORK/bin/presence"
chmod 0755 "$WORK/bin/presence"

# The entry first: every node is told where nginx will listen.
ENTRY_PORT="$(free_port)"
ENTRY="http://127.0.0.1:$ENTRY_PORT"

declare -A NODE_URL
NODES=()
for n in n1 n2 n3; do
  start_node "$n" env PORT=0 PARTYRING_FETCH_ENTRY="127.0.0.1:$ENTRY_PORT" \
    RUST_LOG=info NO_COLOR=1 "$WORK/bin/presence"
  NODE_URL[$n]="http://$NODE_ADDR"
  NODES+=("$n=${NODE_URL[$n]}=$WORK/$n/stderr")
done
log "nodes (presence example, PARTYRING_FETCH_ENTRY=127.0.0.1:$ENTRY_PORT): n1=${NODE_URL[n1]} n2=${NODE_URL[n2]} n3=${NODE_URL[n3]}"

render_scaleout() {
  write_nginx_conf 1
  python3 "$HERE/render.py" conf deploy/nginx-scaleout.conf "$WORK/nginx/site.conf" \
    --sub "listen 80;" "listen 127.0.0.1:$1;" \
    --nodes "${NODE_URL[n1]#http://}" "${NODE_URL[n2]#http://}" "${NODE_URL[n3]#http://}"
}
start_nginx render_scaleout "$ENTRY_PORT"
log "nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') on $ENTRY: $(sed -n 's/^ *\(hash [^;]*\);/\1/p' deploy/nginx-scaleout.conf) over n1 n2 n3"

node "$HERE/scaleout-fetch-client.mjs" "$ENTRY" "$WORK/nginx/access.log" "${NODES[@]}" ||
  fail "party fetches through nginx across nodes"

for n in n1 n2 n3; do
  if grep -Eq 'panicked|ERROR' "$WORK/$n/stderr"; then
    grep -E 'panicked|ERROR' "$WORK/$n/stderr" | head -n 5 >&2
    fail "node $n logged an error"
  fi
done
log "deploy-scaleout-fetch: passed"
