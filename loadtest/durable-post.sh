#!/usr/bin/env bash
# Durable POST (the default `--fsync always`) beside the disk's flush latency (issue 13).
#
# A durable POST is answered only after its record is fdatasync'ed, and every write of one
# event-loop pass shares one fsync (group commit), so its rate is bounded by how fast the disk
# flushes, not by CPU: the server is not saturated and no per-CPU figure is quoted for it. What
# this prints, per round:
#   - the disk's flush latency where the data directory lives: 300 x (append 128 bytes,
#     fdatasync) in a fresh file, p50 / p90 / p99 / max in µs;
#   - per driver (wrk -t1 -c20, wrk -t1 -c100, partyring-load --send immediate with 20 conns),
#     each on a fresh server (one core, CPU 0, `--persist true --fsync always`, a fresh data
#     directory) with the load on CPU 1: POSTs/s, the server's CPU share, records per fsync and
#     fsyncs/s (from /metrics, over the whole run), RES interrupts and context switches per POST,
#     and for partyring-load the POST latency p50 / p99.
#
#   usage: loadtest/durable-post.sh [rounds] [seconds]   (default 3 rounds of 4 s)
# Exits 1 when a run failed (a request error, a server that did not answer).
#   DATA_ROOT=DIR puts the data directories (and the flush probe) on DIR's filesystem
#   (default: target/, i.e. the disk the repository is on).
# Build first: cargo build --release --workspace. wrk is the Debian package.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
SECS="${2:-4}"
DATA_ROOT="${DATA_ROOT:-$ROOT/target}"
BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
GEN="$ROOT/target/release/partyring-load"
command -v wrk >/dev/null || { echo "durable-post: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x "$BIN" ] && [ -x "$GEN" ] || { echo "durable-post: build first (cargo build --release --workspace)" >&2; exit 2; }
mkdir -p "$DATA_ROOT"
OUT="$ROOT/loadtest/results/durable-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
echo "commit $(git rev-parse --short HEAD), $(nproc) vCPU, $(uname -r), data on $(df --output=source,fstype "$DATA_ROOT" | tail -1 | xargs)" | tee "$OUT/meta.txt"

# The sum of a counter over the server's /metrics.
metric() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {s += $NF} END {printf "%d\n", s}'
}

flush_probe() {
  python3 - "$1" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "flush-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
lat = []
try:
    for _ in range(300):
        os.write(fd, b"x" * 128)
        t = time.perf_counter_ns()
        os.fdatasync(fd)
        lat.append((time.perf_counter_ns() - t) / 1000)
finally:
    os.close(fd)
    os.unlink(path)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"flush latency (append 128 B + fdatasync, 300x): p50 {q(0.5):.0f} us, p90 {q(0.9):.0f} us, "
      f"p99 {q(0.99):.0f} us, max {lat[-1]:.0f} us")
PY
}

port=19700
FAILED=0
for round in $(seq 1 "$ROUNDS"); do
  D="$(mktemp -d "$DATA_ROOT/durable-probe.XXXXXX")"
  echo "round $round: $(flush_probe "$D")" | tee -a "$OUT/summary.txt"
  rmdir "$D"
  for driver in wrk-c20 wrk-c100 load-c20; do
    port=$((port + 1))
    D="$(mktemp -d "$DATA_ROOT/durable-run.XXXXXX")"
    (exec taskset -c 0 "$BIN" --port "$port" --threads 1 --persist true --data-dir "$D/data" \
      --fsync always >"$D/out" 2>"$D/err") &
    PID=$!
    for _ in $(seq 100); do grep -q listening "$D/out" 2>/dev/null && break; sleep 0.1; done
    rec0="$(metric "$port" partyring_storage_records_total)"
    fs0="$(metric "$port" partyring_storage_fsyncs_total)"
    t0="$(date +%s.%N)"
    common=(--url "http://127.0.0.1:$port" --server-pid "$PID" --server-cpu 0 --cpu 1
      --duration "$SECS" --warmup 1 --json "$OUT/r$round-$driver.json")
    case "$driver" in
      wrk-c*)
        conns="${driver#wrk-c}"
        "$GEN" exec "${common[@]}" --label "durable-post-$driver" -- wrk -t1 "-c$conns" \
          "-d${SECS}s" -s "$ROOT/loadtest/wrk/partyring.lua" \
          "http://127.0.0.1:$port/parties/main/durable-$driver" -- post 64 \
          >"$OUT/r$round-$driver.log" 2>&1 || { echo "  (run failed: $OUT/r$round-$driver.log)"; FAILED=1; } ;;
      load-c20)
        "$GEN" http "${common[@]}" --conns 20 --pipeline 1 --rooms 1 --room-prefix durable-load \
          --method post --size 64 --send immediate \
          >"$OUT/r$round-$driver.log" 2>&1 || { echo "  (run failed: $OUT/r$round-$driver.log)"; FAILED=1; } ;;
    esac
    t1="$(date +%s.%N)"
    rec1="$(metric "$port" partyring_storage_records_total)"
    fs1="$(metric "$port" partyring_storage_fsyncs_total)"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    rm -rf "$D"
    python3 - "$OUT/r$round-$driver.json" "$round" "$driver" "$rec0" "$rec1" "$fs0" "$fs1" "$t0" "$t1" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
sys.path.insert(0, "loadtest")
from compare_report import fmt, load_run
path, rnd, driver = sys.argv[1:4]
rec0, rec1, fs0, fs1 = (int(x) for x in sys.argv[4:8])
t0, t1 = float(sys.argv[8]), float(sys.argv[9])
r = load_run(path)
if r is None:
    print(f"round {rnd} {driver:8}: no result")
    sys.exit(0)
fsyncs = fs1 - fs0
per_fsync = (rec1 - rec0) / fsyncs if fsyncs else float("nan")
lat = ""
try:
    l = json.load(open(path))["steps"][0]["latency_us"]
    lat = f", POST latency p50 {l['p50']:.0f} us p99 {l['p99']:.0f} us"
except (KeyError, IndexError, TypeError, ValueError):
    pass
print(f"round {rnd} {driver:8}: {fmt(r['rate'])} POST/s, server CPU {fmt(r['srv_pct'], 0)}%, "
      f"{per_fsync:.1f} records per fsync, {fsyncs / (t1 - t0):.0f} fsyncs/s, "
      f"per POST: RES {fmt(r['res'], 3)}, cs {fmt(r['cs'], 3)}{lat}")
PY
  done
done
echo "results: $OUT"
# A failed run (a POST refused or lost, the server gone) fails the script: CI runs it as a smoke.
exit "$FAILED"
