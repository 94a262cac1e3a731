#!/usr/bin/env bash
# Scale-out test: 3 partyring nodes on loopback behind an unmodified Debian nginx configured by
# deploy/nginx-scaleout.conf (consistent hash on party + room).
#
#   bash tests/deploy/scaleout.sh     # from the repo root; PARTYRING_BIN (default
#                                     # ./target/release/partyring) is the binary under test
#
# 1. 30 rooms, 3 WebSocket clients each through nginx, a POST per room through nginx: every
#    client gets its room's message, and each room's history is on exactly one node (GET on
#    each node directly).
# 2. The node with the most rooms is removed from the config and nginx reloaded: rooms of the
#    remaining nodes stay where they were (their history there grows), only the removed
#    node's rooms move.
# 3. One remaining node is stopped, nginx unchanged: its rooms answer 502 and are not sent to
#    another node (max_fails=0, proxy_next_upstream off).
# Installs nginx (and curl) with apt-get when missing. Exits non-zero on any failure. Listens
# and connects on 127.0.0.1 only; everything it starts is stopped on exit. Takes ~10 s.
TEST_NAME=scaleout # read by lib.sh
# shellcheck source=tests/deploy/lib.sh disable=SC2034
source "$(dirname "$0")/lib.sh"
ensure_node_modules

declare -A NODE_URL NODE_PIDS
for n in n1 n2 n3; do
  start_node "$n"
  NODE_URL[$n]="http://$NODE_ADDR"
  NODE_PIDS[$n]="$NODE_PID"
done
log "nodes: n1=${NODE_URL[n1]} n2=${NODE_URL[n2]} n3=${NODE_URL[n3]} (each in its own working directory)"

ACTIVE=(n1 n2 n3)
GENERATION=1
render_scaleout() {
  local addrs=() n
  for n in "${ACTIVE[@]}"; do addrs+=("${NODE_URL[$n]#http://}"); done
  write_nginx_conf "$GENERATION"
  python3 "$HERE/render.py" conf deploy/nginx-scaleout.conf "$WORK/nginx/site.conf" \
    --sub "listen 80;" "listen 127.0.0.1:$1;" --nodes "${addrs[@]}"
}
start_nginx render_scaleout
ENTRY="http://127.0.0.1:$NGINX_PORT"
log "nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') on $ENTRY: $(sed -n 's/^ *\(hash [^;]*\);/\1/p' deploy/nginx-scaleout.conf) over ${ACTIVE[*]}"

STATE="$WORK/state.json"
NODES=(n1="${NODE_URL[n1]}" n2="${NODE_URL[n2]}" n3="${NODE_URL[n3]}")
node "$HERE/scaleout-client.mjs" before "$ENTRY" "$STATE" "${NODES[@]}" || fail "phase 1 (all nodes) failed"

# Remove the node that owns the most rooms, reload nginx, wait until the new config answers.
REMOVED="$(python3 -c 'import json,sys,collections; r=json.load(open(sys.argv[1]))["rooms"]; print(collections.Counter(r.values()).most_common(1)[0][0])' "$STATE")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s["removed"]=sys.argv[2]; json.dump(s,open(sys.argv[1],"w"))' "$STATE" "$REMOVED"
ACTIVE=()
for n in n1 n2 n3; do [ "$n" = "$REMOVED" ] || ACTIVE+=("$n"); done
GENERATION=2
render_scaleout "$NGINX_PORT"
"$NGINX" -t -q -p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || fail "nginx -t rejected the new config"
kill -HUP "$NGINX_PID"
seen=0
for _ in $(seq 1 100); do
  if curl -s -o /dev/null -D - --max-time 1 "$ENTRY/parties/main/reload-probe" | grep -qi '^x-test-config: 2'; then
    seen=$((seen + 1))
    [ "$seen" -ge 3 ] && break
  else
    seen=0
  fi
  sleep 0.1
done
[ "$seen" -ge 3 ] || fail "nginx did not pick up the new config within 10 s"
log "removed $REMOVED from the upstream list; nginx reloaded (nginx -s reload / SIGHUP): ${ACTIVE[*]}"
node "$HERE/scaleout-client.mjs" after "$ENTRY" "$STATE" "${NODES[@]}" || fail "phase 2 (node removed) failed"

# Stop one remaining node without telling nginx.
STOPPED="${ACTIVE[0]}"
kill -TERM "${NODE_PIDS[$STOPPED]}"
for _ in $(seq 1 50); do
  kill -0 "${NODE_PIDS[$STOPPED]}" 2>/dev/null || break
  sleep 0.1
done
kill -0 "${NODE_PIDS[$STOPPED]}" 2>/dev/null && fail "node $STOPPED did not stop within 5 s"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); s["stopped"]=sys.argv[2]; json.dump(s,open(sys.argv[1],"w"))' "$STATE" "$STOPPED"
log "stopped $STOPPED (SIGTERM), nginx config unchanged"
node "$HERE/scaleout-client.mjs" stopped "$ENTRY" "$STATE" "${NODES[@]}" || fail "phase 3 (node down) failed"

log "deploy-scaleout: 3 passed, 0 failed"
