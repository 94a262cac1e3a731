#!/usr/bin/env bash
# loadtest/gate-latency.sh — what the storage output gate costs in delivery latency (issue 15).
#
# Usage: loadtest/gate-latency.sh OLD_BIN NEW_BIN [ROUNDS] [RATE] [DURATION]
#
# Both servers run durable (`--fsync always`, a fresh --data-dir on the disk under
# loadtest/results) with one core pinned to CPU 0; the generator (CPU 1) runs the open-loop
# fan-out: 100 rooms x 16 members, RATE publishes per second in total (default 2000, so 30,000
# deliveries/s), each message timed from its intended send time to each member's receipt.
# OLD is a build without the gate (it broadcasts before the write is durable), NEW one with
# it (broadcast after the fsync). Rounds alternate which side runs first (at least 5, the
# A/B protocol's smallest sample); each run gets a fresh server and data dir. Prints every
# run's p50/p99/p99.9 and the server's CPU share, then the medians (min-max) per side.
# Results (the generator's JSON and output per run) go to loadtest/results/gate-<time>/.
#
# Bounded: ROUNDS <= 20, DURATION <= 30 s; every server is stopped by its pid.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OLD="${1:?usage: $0 OLD_BIN NEW_BIN [ROUNDS] [RATE] [DURATION]}"
NEW="${2:?usage: $0 OLD_BIN NEW_BIN [ROUNDS] [RATE] [DURATION]}"
ROUNDS="${3:-5}"
RATE="${4:-2000}"
DURATION="${5:-5}"
[ "$ROUNDS" -ge 5 ] && [ "$ROUNDS" -le 20 ] || { echo "gate-latency: ROUNDS must be 5-20" >&2; exit 2; }
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 30 ] || { echo "gate-latency: DURATION must be 1-30" >&2; exit 2; }
LOAD="$ROOT/target/release/partyring-load"
[ -x "$LOAD" ] || cargo build --release -p partyring-load
OUT="$ROOT/loadtest/results/gate-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
echo "old: $OLD  new: $NEW  rate: $RATE/s  duration: ${DURATION}s  commit: $(git rev-parse --short HEAD)" | tee "$OUT/meta.txt"

SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

run() { # side bin round
  local side="$1" bin="$2" round="$3" dir log addr=""
  dir="$OUT/data-$side-$round"
  log="$OUT/server-$side-$round.log"
  taskset -c 0 "$bin" --threads 1 --port 0 --data-dir "$dir" --fsync always >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n1 | sed 's|.*http://||')" || true
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "server did not start:"; cat "$log"; exit 1; }
  "$LOAD" --url "ws://$addr" --server-pid "$SERVER_PID" --cpu 1 --warmup 1 --duration "$DURATION" \
    --json "$OUT/$side-$round.json" fanout --rooms 100 --members 16 --size 64 --rate "$RATE" \
    --room-prefix "g$round" >"$OUT/$side-$round.txt" 2>&1 || { echo "run failed:"; cat "$OUT/$side-$round.txt"; exit 1; }
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  rm -rf "$dir"
  python3 - "$OUT/$side-$round.json" "$side" "$round" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
# partyring-load's --json: one step per measured window (this script measures one).
lat = d["steps"][0].get("latency_us") or {}
cpu = round(d["server_cpu_pct"])
print(f"round {sys.argv[3]} {sys.argv[2]:4}: p50 {lat.get('p50', float('nan')):8.0f} us  p99 {lat.get('p99', float('nan')):8.0f} us  "
      f"p99.9 {lat.get('p999', float('nan')):8.0f} us  server CPU {cpu}%")
PY
}

for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for side in $order; do
    if [ "$side" = old ]; then run old "$OLD" "$r"; else run new "$NEW" "$r"; fi
  done
done | tee "$OUT/runs.txt"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, glob, os, statistics, sys
out = sys.argv[1]
for side in ("old", "new"):
    rows = [json.load(open(f))["steps"][0].get("latency_us") or {}
            for f in sorted(glob.glob(os.path.join(out, f"{side}-*.json")))]
    for q in ("p50", "p99", "p999"):
        v = [r[q] for r in rows if q in r]
        if v:
            print(f"{side} {q:5}: median {statistics.median(v):8.0f} us  ({min(v):.0f}-{max(v):.0f}, {len(v)} runs)")
PY
