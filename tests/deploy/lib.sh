# shellcheck shell=bash disable=SC2034  # NODE_ADDR, NGINX_PORT, ... are read by the sourcing script
# Shared by tests/deploy/tls.sh, scaleout.sh and scaleout-fetch.sh (sourced, not run).
# Sets up: ROOT (repo root, the working directory), HERE, BIN (a copy of the partyring binary
# named by PARTYRING_BIN, default ./target/release/partyring), WORK (a temp dir removed on exit), NGINX, and an EXIT trap that
# stops every process started through start_node / start_nginx (by pid) and removes WORK.
# Every wait is bounded. All traffic stays on 127.0.0.1.

set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false
TEST_NAME="${TEST_NAME:-deploy}"
T0=$SECONDS

log() { printf '[%s %3ds] %s\n' "$TEST_NAME" "$((SECONDS - T0))" "$*"; }
fail() {
  log "FAIL: $*"
  exit 1
}

PARTYRING_BIN="${PARTYRING_BIN:-./target/release/partyring}"
[ -x "$PARTYRING_BIN" ] || fail "no partyring binary at $PARTYRING_BIN (cargo build --release, or set PARTYRING_BIN)"

WORK="$(mktemp -d -t "partyring-$TEST_NAME.XXXXXX")"
chmod 0755 "$WORK"
PIDS=()

# Stops what this script started, newest first: SIGTERM, up to 5 s, then SIGKILL.
cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  trap '' PIPE # a closed stdout (| head) must not stop the cleanup half way
  set +e
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    p="${PIDS[$i]}"
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$rc" != 0 ]; then
    log "exit status $rc"
    for f in "$WORK"/nginx/error.log "$WORK"/*/stderr; do
      [ -s "$f" ] || continue
      log "last lines of $f:"
      tail -n 15 "$f" >&2 || true
    done
  fi
  if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy: readable by an unprivileged user, and safe from a rebuild while the test runs.
mkdir -p "$WORK/bin"
cp "$PARTYRING_BIN" "$WORK/bin/partyring"
chmod 0755 "$WORK/bin" "$WORK/bin/partyring"
BIN="$WORK/bin/partyring"

# Runs a command as root: directly when we are root, else through passwordless sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

APT_UPDATED=
# ensure_tool COMMAND DEBIAN_PACKAGE: installs the package with apt-get when the command is missing.
ensure_tool() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  [ -x "/usr/sbin/$cmd" ] && return 0
  log "$cmd is missing: apt-get install $pkg"
  if [ -z "$APT_UPDATED" ]; then
    as_root apt-get update -qq || fail "apt-get update failed (needs root or passwordless sudo)"
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
    fail "apt-get install $pkg failed (needs root or passwordless sudo)"
}

ensure_tool nginx nginx
ensure_tool curl curl
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"

# node_modules of tests/deploy (ws, pinned by package-lock.json).
ensure_node_modules() {
  command -v node >/dev/null 2>&1 || fail "node is missing (Node 20 expected)"
  if [ ! -f "$HERE/node_modules/ws/package.json" ] ||
    ! grep -q '"version": "8.23.0"' "$HERE/node_modules/ws/package.json"; then
    log "npm ci in tests/deploy"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci failed"
  fi
}

# A free TCP port on 127.0.0.1 (another process may take it before we bind: callers retry).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_node NAME [COMMAND...]: runs COMMAND (default: "$BIN --port 0 --threads 2
# --shutdown-timeout 1") in its own working directory $WORK/NAME, so each node's default data
# directory (./.partyring) is its own. Waits (10 s at most) for "partyring listening on
# http://ADDR" (or, from an example server, "listening on http://ADDR") on stdout; sets
# NODE_ADDR and NODE_PID.
start_node() {
  local name="$1" dir="$WORK/$1" addr=""
  shift
  [ $# -gt 0 ] || set -- "$BIN" --port 0 --threads 2 --shutdown-timeout 1
  mkdir -p "$dir"
  (cd "$dir" && exec "$@" >"$dir/stdout" 2>"$dir/stderr") &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  for _ in $(seq 1 100); do
    # (|| true: stdout may not exist yet, and sed's status 2 must not end the script silently)
    addr="$(sed -n 's|^\(partyring \)\{0,1\}listening on http://||p' "$dir/stdout" 2>/dev/null | head -n1)" || true
    [ -n "$addr" ] && break
    kill -0 "$NODE_PID" 2>/dev/null || fail "node $name exited at start"
    sleep 0.1
  done
  [ -n "$addr" ] || fail "node $name did not print its address within 10 s"
  case "$addr" in 127.*) ;; *) fail "node $name listens on $addr, not loopback" ;; esac
  NODE_ADDR="$addr"
}

# write_nginx_conf GENERATION: the main nginx.conf around $WORK/nginx/site.conf (the rendered
# deploy/ template). Everything nginx writes stays in $WORK/nginx; workers run as the current
# user. Every response carries X-Test-Config: GENERATION, so a test sees when a reload took,
# and (when proxied) X-Test-Upstream: the node address nginx chose; access.log names it too.
write_nginx_conf() {
  local d="$WORK/nginx" user_line=""
  mkdir -p "$d/tmp"
  if [ "$(id -u)" = 0 ]; then
    # Only a master started by root switches users (default: nobody); keep the current one.
    user_line="user $(id -un) $(id -gn);"
  fi
  cat >"$d/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes 1;
worker_shutdown_timeout 5s;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    log_format test '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent "\$http_user_agent" upstream=\$upstream_addr';
    access_log $d/access.log test;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    add_header X-Test-Config $1 always;
    add_header X-Test-Upstream \$upstream_addr always;
    include $d/site.conf;
}
EOF
}

# start_nginx RENDER_FUNCTION [PORT]: picks a free port (or takes PORT), calls RENDER_FUNCTION
# PORT (which writes $WORK/nginx/site.conf), checks the config with nginx -t, starts nginx in
# the foreground (tracked by pid) and waits (5 s at most) until it answers. Retries with another
# port if the port was taken meanwhile (not with a given PORT: that fails). Sets NGINX_PORT and
# NGINX_PID.
start_nginx() {
  local render="$1" fixed="${2:-}" port tries d="$WORK/nginx"
  for tries in 1 2 3; do
    port="${fixed:-$(free_port)}"
    "$render" "$port"
    "$NGINX" -t -q -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" || fail "nginx -t rejected the config"
    "$NGINX" -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    for _ in $(seq 1 50); do
      if curl -s -k -o /dev/null --max-time 1 "http://127.0.0.1:$port/" ||
        curl -s -k -o /dev/null --max-time 1 "https://127.0.0.1:$port/"; then
        NGINX_PORT="$port"
        return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    if grep -q "Address already in use" "$d/error.log" 2>/dev/null; then
      [ -z "$fixed" ] || fail "nginx: port $port was taken by another process meanwhile (rerun)"
      log "port $port was taken; trying another (try $tries)"
      kill "$NGINX_PID" 2>/dev/null || true
      wait "$NGINX_PID" 2>/dev/null || true
      : >"$d/error.log"
      continue
    fi
    fail "nginx did not start on 127.0.0.1:$port"
  done
  fail "nginx could not get a free port"
}
