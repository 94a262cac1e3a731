#!/usr/bin/env bash
# Interleaved A/B of ring modes (docs/ring-modes.md) under wrk: for each round, each shape, each
# mode, a fresh server (--threads 1 --persist false) pinned to CPU 0 and wrk -t1 pinned to CPU 1.
# Prints one line per run: rate, server CPU share, rate per server-CPU-second (only when the
# server was >= 90% busy; "unsaturated" otherwise), and per-request counters that contention
# cannot move much: RES interrupts on CPU 0, server CPU-microseconds per request, context
# switches and (where the VM exposes a PMU) cycles of the server (perf stat -p). Loopback only; every run is bounded by wrk's -d.
#
# Usage: loadtest/ring-ab.sh [ROUNDS=5] [SECONDS=5] [MODES="plain coop defer"] [SHAPES="get20 get100 post20"]
# Needs: wrk, perf, curl, a release build (cargo build --release).
set -euo pipefail
ROUNDS="${1:-5}"; SECS="${2:-5}"; MODES="${3:-plain coop defer}"; SHAPES="${4:-get20 get100 post20}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"message":"hello from wrk"}'
wrk.headers["Content-Type"] = "application/json"
LUA
res() { awk '/^ *RES:/{print $2}' /proc/interrupts; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # mode shape round
  local mode=$1 shape=$2 round=$3 pid addr conns script=() out
  taskset -c 0 "$BIN" --port 0 --threads 1 --persist false --ring-mode "$mode" >"$WORK/out" 2>"$WORK/err" &
  pid=$!
  for _ in $(seq 100); do addr="$(sed -n 's|.*http://||p' "$WORK/out")"; [ -n "$addr" ] && break; sleep 0.05; done
  [ -n "$addr" ] || { echo "server did not start"; cat "$WORK/err"; kill "$pid"; return 1; }
  for i in 1 2 3 4 5; do curl -s -XPOST -d "{\"message\":\"m$i\"}" "http://$addr/parties/main/bench" >/dev/null; done
  case $shape in get*) conns=${shape#get};; post*) conns=${shape#post}; script=(-s "$WORK/post.lua");; esac
  local hz r0 c0 t0 r1 c1 t1
  hz=$(getconf CLK_TCK)
  perf stat -x, -e cycles,context-switches -p "$pid" -o "$WORK/perf" -- sleep "$((SECS + 1))" &
  local perfpid=$!
  sleep 0.3
  r0=$(res); c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" "${script[@]}" "http://$addr/parties/main/bench")"
  r1=$(res); c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  wait "$perfpid" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local req cyc cs
  req=$(echo "$out" | awk '/requests in/{print $1}')
  cyc=$(awk -F, '/cycles/{print $1}' "$WORK/perf"); cs=$(awk -F, '/context-switches/{print $1}' "$WORK/perf")
  python3 - "$mode" "$shape" "$round" "$req" "$t0" "$t1" "$c0" "$c1" "$hz" "$r0" "$r1" "${cyc:-0}" "${cs:-0}" "$SECS" <<'PY'
import sys
mode, shape, rnd = sys.argv[1:4]
def num(s):
    try:
        return float(s)
    except ValueError:  # perf prints "<not supported>" where the VM has no PMU
        return None
req, t0, t1, c0, c1, hz, r0, r1, cyc, cs, secs = map(num, sys.argv[4:15])
wall = t1 - t0; cpu = (c1 - c0) / hz; share = cpu / wall
# perf counted over SECS+1 s; scale its totals to the wrk window.
scale = secs / (secs + 1.0)
per_cpu = f"{req / cpu:9.0f}" if share >= 0.90 else "unsaturated"
print(f"round={int(rnd)} mode={mode:6} shape={shape:7} req/s={req / wall:8.0f} srv%={100 * share:5.1f} "
      f"per-cpu-s={per_cpu:>11} RES/req={(r1 - r0) / req:.3f} cs/req~={cs / (req / scale):.3f} "
      f"cpu-us/req={1e6 * cpu / req:.2f} "
      + (f"cycles/req~={cyc / (req / scale):.0f}" if cyc else "cycles/req=n/a"))
PY
}
echo "# ring-ab: $(uname -r), $(nproc) CPUs, commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%FT%TZ)"; echo
for round in $(seq "$ROUNDS"); do
  for shape in $SHAPES; do
    for mode in $MODES; do run "$mode" "$shape" "$round"; done
  done
done
