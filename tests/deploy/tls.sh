#!/usr/bin/env bash
# TLS termination test: an unmodified Debian nginx, configured by deploy/nginx-tls.conf, serves
# https:// and wss:// in front of ONE partyring node started the way deploy/partyring.service
# starts it (its ExecStart flags and LimitNOFILE, as an unprivileged user when run as root, in
# its own state directory). Also checks that docs/deploy.md shows the deploy/ files verbatim,
# that systemd accepts the unit, and that every sysctl it names exists on this kernel.
#
#   bash tests/deploy/tls.sh      # from the repo root; PARTYRING_BIN (default
#                                 # ./target/release/partyring) is the binary under test
#
# Installs nginx (and curl) with apt-get when missing. Exits non-zero on any failure. Listens
# and connects on 127.0.0.1 only; everything it starts is stopped on exit.
TEST_NAME=tls # read by lib.sh
# shellcheck source=tests/deploy/lib.sh disable=SC2034
source "$(dirname "$0")/lib.sh"
ensure_tool openssl openssl
ensure_node_modules
PASSED=0
ok() {
  PASSED=$((PASSED + 1))
  log "ok - $*"
}

# --- the deploy files: shown in the docs, accepted by systemd, sysctls that exist ---------
python3 "$HERE/render.py" check-docs docs/deploy.md deploy/partyring.service \
  deploy/sysctl-partyring.conf deploy/nginx-tls.conf deploy/nginx-scaleout.conf
ok "docs/deploy.md shows deploy/partyring.service, sysctl-partyring.conf, nginx-tls.conf and nginx-scaleout.conf verbatim"

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify needs ExecStart's binary to exist: point it at the one under test.
  sed "s|^ExecStart=/usr/local/bin/partyring |ExecStart=$BIN |" deploy/partyring.service >"$WORK/partyring.service"
  out="$(cd "$WORK" && systemd-analyze verify "$WORK/partyring.service" 2>&1)" ||
    fail "systemd-analyze verify failed: $out"
  [ -z "$out" ] || fail "systemd-analyze verify warns about deploy/partyring.service: $out"
  ok "systemd-analyze verify accepts deploy/partyring.service"
else
  log "skip: systemd-analyze not installed (unit not verified)"
fi

missing=""
while read -r key; do
  [ -e "/proc/sys/${key//.//}" ] || missing="$missing $key"
done < <(sed -n 's/^#\{0,1\}\([a-z][a-z0-9_]*\.[a-z0-9_.]*\) *=.*/\1/p' deploy/sysctl-partyring.conf)
[ -z "$missing" ] || fail "deploy/sysctl-partyring.conf names sysctls this kernel lacks:$missing"
ok "every sysctl in deploy/sysctl-partyring.conf exists in /proc/sys (those without a leading -)"

uring="$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo "absent")"
log "kernel.io_uring_disabled = $uring (0: io_uring allowed for every process)"

# --- one partyring node, started as the unit starts it -----------------------------------
mkdir -p "$WORK/state"
mapfile -t unit < <(python3 "$HERE/render.py" unit-cmd deploy/partyring.service "$BIN" 0 "$WORK/state")
envs=() cmd=() nofile="" in_cmd=""
for w in "${unit[@]}"; do
  if [ "$w" = "--" ]; then in_cmd=1
  elif [[ $w == nofile=* ]]; then nofile="${w#nofile=}"
  elif [ -n "$in_cmd" ]; then cmd+=("$w")
  else envs+=("$w"); fi
done
cmd+=(--threads 2 --shutdown-timeout 1)
launcher=(env "${envs[@]}")
# LimitNOFILE=: raise both limits to it where this machine allows (a sandbox may not).
if prlimit "--nofile=$nofile:$nofile" true 2>/dev/null; then
  launcher+=(prlimit "--nofile=$nofile:$nofile" --)
else
  log "note: cannot raise the open-file limit to LimitNOFILE=$nofile here (hard limit $(ulimit -Hn)); the node keeps $(ulimit -Hn)"
  nofile="$(ulimit -Hn)"
fi
if [ "$(id -u)" = 0 ]; then
  # User=, StateDirectory=, WorkingDirectory=: an unprivileged user in a directory of its own.
  chown 65534:65534 "$WORK/state"
  chmod 0750 "$WORK/state"
  launcher+=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --)
fi
start_node state "${launcher[@]}" "${cmd[@]}"
NODE="$NODE_ADDR"
node_uid="$(awk '/^Uid:/ {print $2}' "/proc/$NODE_PID/status")"
node_nofile="$(awk '/^Max open files/ {print $4}' "/proc/$NODE_PID/limits")"
driver="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/state/stderr" | sed -n 's/.*partyring listening.* driver=//p' | head -n1)"
log "node: ${cmd[*]} (uid $node_uid, open files $node_nofile, driver $driver) on $NODE"
if [ "$(id -u)" = 0 ]; then
  [ "$node_uid" != 0 ] || fail "the node runs as root"
  ok "the node runs unprivileged (uid $node_uid), in its own state directory"
fi
[ "$node_nofile" = "$nofile" ] || fail "the node's open-file limit is $node_nofile, not $nofile"
ok "the node's open-file limit is $nofile"

# --- throwaway CA-less self-signed certificate for 127.0.0.1 -----------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || fail "openssl could not make a certificate"

# --- nginx from deploy/nginx-tls.conf ----------------------------------------------------
render_tls() {
  write_nginx_conf 1
  python3 "$HERE/render.py" conf deploy/nginx-tls.conf "$WORK/nginx/site.conf" \
    --sub "listen 443 ssl;" "listen 127.0.0.1:$1 ssl;" \
    --sub "server 127.0.0.1:1999;" "server $NODE;" \
    --sub "ssl_certificate     /etc/letsencrypt/live/party.example.com/fullchain.pem;" "ssl_certificate $WORK/cert.pem;" \
    --sub "ssl_certificate_key /etc/letsencrypt/live/party.example.com/privkey.pem;" "ssl_certificate_key $WORK/key.pem;"
}
start_nginx render_tls
URL="https://127.0.0.1:$NGINX_PORT"
log "nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') terminates TLS on $URL"

CURL=(curl -sS --max-time 5 --cacert "$WORK/cert.pem")
body="$("${CURL[@]}" -X POST -H 'content-type: application/json' -d '{"message":"hi"}' \
  -D "$WORK/post.headers" "$URL/parties/main/room1")" || fail "HTTPS POST failed"
[ "$body" = "OK" ] || fail "HTTPS POST answered '$body', not OK"
grep -qi '^x-test-config: 1' "$WORK/post.headers" || fail "the POST's answer did not come through nginx"
ok "POST {\"message\":\"hi\"} to $URL/parties/main/room1 -> OK (certificate verified)"
body="$("${CURL[@]}" "$URL/parties/main/room1")" || fail "HTTPS GET failed"
[ "$body" = '["hi"]' ] || fail "HTTPS GET answered '$body', not [\"hi\"]"
ok "GET $URL/parties/main/room1 -> [\"hi\"]"
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$NGINX_PORT/parties/main/room1")" || true
[ "$code" = 400 ] || fail "plain http:// on the TLS port answered $code, not 400"
ok "plain http:// on the TLS port is refused (400)"

# The unit's PARTYRING_DATA_DIR (under its state directory) holds the storage logs, and the
# POST above is in one of them.
[ -f "$WORK/state/data/cores" ] || fail "no data directory at state/data (PARTYRING_DATA_DIR from the unit)"
grep -q hi "$WORK"/state/data/core-*.log || fail "the POSTed message is in no storage log under state/data"
ok "the node keeps its data where the unit says: state/data (owner uid $(stat -c %u "$WORK/state/data"))"

node "$HERE/tls-client.mjs" "$URL" "$WORK/cert.pem" room1 || fail "wss:// client checks failed"
ok "wss:// clients: handshake verified, broadcast of an HTTPS POST, text between clients, clean close"

log "deploy-tls: $PASSED passed, 0 failed"
