#!/usr/bin/env bash
# loadtest/yjs-bench.sh — Yjs update fan-out per server-CPU-second: partyring's built-in `yjs`
# party against y-partykit's own server on `partykit dev` (tests/yjs/partykit, the party the
# Node interop suite checks), with `partyring-load yjs` as the client.
#
# Usage: loadtest/yjs-bench.sh [--rounds N] [--duration SECS] [--warmup SECS] [--min-cpu PCT]
#                              [--port-base P] [--out DIR] [-- YJS ARGS...]
#
# Comparable settings: neither side stores anything. partyring runs with `--threads 1
# --persist false --yjs-persist none`; the y-partykit party runs with `persist: false`
# (`--var YJS_PERSIST=none`) under `partykit dev --persist false`. Both keep gc on (each one's
# default without persistence). The load is the same: YJS ARGS (default `--rooms 100
# --members 16 --batch 16 --writers one`), R x M members, closed loop. y-partykit also sends
# every update back to its sender (y-websocket's server does); the generator ignores those
# copies, they are work only the peer does.
#
# Each round runs both servers, each on a fresh process (server on CPU 0, generator on CPU 1),
# alternating which goes first. Prints every run (deliveries/s, per server-CPU-s, server CPU %)
# then the medians (min-max) over the rounds and partyring/partykit per server-CPU-s, refused
# ("unsaturated") when a side's median CPU share is under --min-cpu (90) % or fewer than
# half of its rounds were saturated. Results: DIR/<server>-<round>.json and DIR/summary.txt.
# Bounded: N <= 20 rounds of <= 30 s; each start waits at most 120 s.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ROUNDS=5
DURATION=5
WARMUP=1
MIN_CPU=90
PORT_BASE=19800
OUT="loadtest/results/yjs-$(date -u +%Y%m%dT%H%M%SZ)"
YJS_ARGS=(--rooms 100 --members 16 --batch 16 --writers one)
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --min-cpu) MIN_CPU="$2"; shift 2 ;;
    --port-base) PORT_BASE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; YJS_ARGS=("$@"); break ;;
    *) echo "yjs-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || { echo "yjs-bench: --rounds must be 1..20" >&2; exit 2; }
[ "$ROUNDS" -ge 5 ] || echo "yjs-bench: fewer than 5 rounds: a smoke run, not a result" >&2
awk -v d="$DURATION" 'BEGIN { exit !(d > 0 && d <= 30) }' || { echo "yjs-bench: --duration must be in (0, 30]" >&2; exit 2; }

BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
LOAD="$ROOT/target/release/partyring-load"
if [ -z "${PARTYRING_BIN:-}" ]; then
  cargo build --release -q -p partyring -p partyring-load
else
  cargo build --release -q -p partyring-load
fi
PK_DIR="$ROOT/tests/yjs/partykit"
if [ ! -d "$PK_DIR/node_modules/partykit" ]; then
  (cd "$PK_DIR" && npm ci --no-audit --no-fund)
fi
mkdir -p "$OUT"

SRV_PID=""
MEASURE_PID=""
stop_server() {
  if [ -n "$SRV_PID" ]; then
    # partykit dev runs workerd as a child: its own process group (setsid) goes as a whole.
    kill -TERM -- "-$SRV_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
  fi
}
trap stop_server EXIT
trap 'echo "yjs-bench: interrupted" >&2; exit 130' INT TERM

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_server NAME PORT LOG: sets SRV_PID and MEASURE_PID (the process owning the port).
start_server() {
  local name="$1" port="$2" log="$3"
  if answers "$port"; then echo "yjs-bench: port $port in use" >&2; return 1; fi
  case "$name" in
    partyring)
      setsid taskset -c 0 "$BIN" --port "$port" --threads 1 --persist false \
        --yjs-persist none >"$log" 2>&1 &
      ;;
    partykit)
      setsid env -C "$PK_DIR" NO_UPDATE_NOTIFIER=1 taskset -c 0 ./node_modules/.bin/partykit dev \
        --port "$port" --persist false --disable-request-cf-fetch --no-hotkeys \
        --var YJS_PERSIST=none >"$log" 2>&1 &
      ;;
  esac
  SRV_PID=$!
  for _ in $(seq 1 1200); do answers "$port" && break; sleep 0.1; done
  answers "$port" || { echo "yjs-bench: $name did not answer on $port; see $log" >&2; return 1; }
  MEASURE_PID="$(ss -Htlnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  [ -n "$MEASURE_PID" ] || { echo "yjs-bench: no process owns port $port" >&2; return 1; }
}

run_one() {
  local name="$1" round="$2" port="$3" rc=0
  start_server "$name" "$port" "$OUT/$name-$round.log" || return 1
  "$LOAD" --url "ws://127.0.0.1:$port" --server-pid "$MEASURE_PID" --cpu 1 --server-cpu 0 \
    --warmup "$WARMUP" --duration "$DURATION" --json "$OUT/$name-$round.json" \
    yjs "${YJS_ARGS[@]}" >"$OUT/$name-$round.txt" 2>"$OUT/$name-$round.err" || rc=$?
  stop_server
  python3 - "$OUT/$name-$round.json" "$name" "$round" "$rc" <<'EOF'
import json, sys
path, name, rnd, rc = sys.argv[1:]
try:
    r = json.load(open(path))
except (OSError, ValueError):
    print(f"{name:10} round {rnd}: no result (exit {rc})"); sys.exit(0)
f = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"
print(f"{name:10} round {rnd}: {f(r.get('rate'))} deliveries/s, {f(r.get('per_server_cpu_sec'))} per server-CPU-s, "
      f"server CPU {f(r.get('server_cpu_pct'), 1)} %, integrity {'OK' if r['integrity'].get('ok') else 'FAILED'} (exit {rc})")
EOF
}

port="$PORT_BASE"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="partyring partykit"; else order="partykit partyring"; fi
  for name in $order; do
    port=$((port + 1))
    run_one "$name" "$round" "$port" || echo "yjs-bench: $name round $round failed" >&2
  done
done

python3 - "$OUT" "$MIN_CPU" <<'EOF' | tee "$OUT/summary.txt"
import glob, json, os, statistics, sys
out, min_cpu = sys.argv[1], float(sys.argv[2])
runs = {}
for p in sorted(glob.glob(os.path.join(out, "*-*.json"))):
    name = os.path.basename(p).split("-")[0]
    try:
        r = json.load(open(p))
    except ValueError:
        continue
    if not r["integrity"].get("ok"):
        print(f"{p}: integrity failed, not counted")
        continue
    runs.setdefault(name, []).append(r)
med = {}
for name, rs in sorted(runs.items()):
    per = [r["per_server_cpu_sec"] for r in rs if r.get("per_server_cpu_sec") is not None]
    cpu = [r["server_cpu_pct"] for r in rs if r.get("server_cpu_pct") is not None]
    rate = [r["rate"] for r in rs if r.get("rate") is not None]
    sat = [r["per_server_cpu_sec"] for r in rs
           if r.get("server_cpu_pct") is not None and r["server_cpu_pct"] >= min_cpu
           and r.get("per_server_cpu_sec") is not None]
    if not per:
        continue
    fmt = lambda v: f"{statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})"
    print(f"{name:10} runs {len(rs)}  deliveries/s {fmt(rate)}  per server-CPU-s {fmt(per)}  "
          f"server CPU % {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f})  saturated runs {len(sat)}")
    med[name] = (statistics.median(sat) if sat else None, statistics.median(cpu), len(sat), len(rs))
a, b = med.get("partyring"), med.get("partykit")
if a and b:
    if any(m[0] is None or m[1] < min_cpu or 2 * m[2] < m[3] for m in (a, b)):
        print(f"partyring/partykit per server-CPU-s: unsaturated (a server under {min_cpu:.0f} % CPU)")
    else:
        print(f"partyring/partykit per server-CPU-s (median of saturated runs): {a[0] / b[0]:.2f}x")
EOF
