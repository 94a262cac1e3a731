#!/usr/bin/env bash
# What a connection handed to another core costs in kernel events (issue 13).
#
# Each core accepts on its own SO_REUSEPORT listener and the kernel picks the core, so with two
# cores about half of the connections to one room arrive on the core that does not own it and are
# handed over (runtime/handoff.rs: the fd goes through the owner's inbox, whose eventfd doorbell
# the owner's ring reads). wrk with `Connection: close` makes every request a new connection, so
# every other request is a handoff. The same load against one core (no handoff possible) is the
# baseline. Printed per request, per setting and round: handoffs (from /metrics), rescheduling
# IPIs on all CPUs (the RES row of /proc/interrupts: with two server cores the owner may sit on
# either CPU), context switches of the server's threads, and requests per server-CPU-second with
# the server's CPU share (the server is not pinned with two cores, so that share is of 2 CPUs
# when it says more than 100%).
#
#   usage: loadtest/handoff-counters.sh [rounds] [seconds]     (default 3 rounds of 4 s)
# Build first: cargo build --release --workspace. wrk is the Debian package.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
SECS="${2:-4}"
BIN="${PARTYRING_BIN:-$ROOT/target/release/partyring}"
GEN="$ROOT/target/release/partyring-load"
command -v wrk >/dev/null || { echo "handoff-counters: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -x "$BIN" ] && [ -x "$GEN" ] || { echo "handoff-counters: build first (cargo build --release --workspace)" >&2; exit 2; }
OUT="$ROOT/loadtest/results/handoff-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
echo "commit $(git rev-parse --short HEAD), $(nproc) vCPU, $(uname -r)" | tee "$OUT/meta.txt"

metric() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"({|$)" {s += $NF} END {printf "%d\n", s}'
}
res_all() {
  awk '$1 == "RES:" {s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s}' /proc/interrupts
}

port=19800
FAILED=0
for round in $(seq 1 "$ROUNDS"); do
  for threads in 1 2; do
    port=$((port + 1))
    log="$OUT/r$round-t$threads"
    if [ "$threads" = 1 ]; then
      (exec taskset -c 0 "$BIN" --port "$port" --threads 1 --persist false >"$log.out" 2>&1) &
    else
      (exec "$BIN" --port "$port" --threads 2 --persist false >"$log.out" 2>&1) &
    fi
    PID=$!
    for _ in $(seq 100); do grep -q listening "$log.out" 2>/dev/null && break; sleep 0.1; done
    h0="$(metric "$port" partyring_handoffs_sent_total)"
    res0="$(res_all)"
    "$GEN" exec --url "http://127.0.0.1:$port" --server-pid "$PID" --cpu 1 --duration "$SECS" \
      --warmup 0 --json "$log.json" --label "handoff-t$threads" -- wrk -t1 -c20 "-d${SECS}s" \
      -H "Connection: close" -s "$ROOT/loadtest/wrk/partyring.lua" \
      "http://127.0.0.1:$port/parties/main/handoff-room" \
      >"$log.log" 2>&1 || echo "  (wrk counted errors or failed: $log.log)"
    [ -s "$log.json" ] || FAILED=1
    res1="$(res_all)"
    h1="$(metric "$port" partyring_handoffs_sent_total)"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    python3 - "$log.json" "$round" "$threads" "$h0" "$h1" "$res0" "$res1" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
sys.path.insert(0, "loadtest")
from compare_report import fmt, load_run
path, rnd, threads = sys.argv[1:4]
h0, h1, res0, res1 = (int(x) for x in sys.argv[4:8])
r = load_run(path)
if r is None or not r["rate"]:
    print(f"round {rnd} threads {threads}: no result")
    sys.exit(0)
# No warm-up: the window is wrk's whole run, which the counters read around it also cover.
reqs = json.load(open(path))["steps"][0]["ops"]
def per(x):
    return f"{x / reqs:.3f}" if reqs else "-"
print(f"round {rnd} threads {threads}: {fmt(r['rate'])} req/s, {fmt(r['per_cpu'])} per server-CPU-s, "
      f"server CPU {fmt(r['srv_pct'], 0)}%, per request: handoffs {per(h1 - h0)}, "
      f"RES (all CPUs, whole run) {per(res1 - res0)}, cs {fmt(r['cs'], 3)}")
PY
  done
done
echo "results: $OUT"
# No result at all fails the script (CI runs it as a smoke). A few wrk connect errors do not:
# new connections at this rate can meet the previous run's TIME_WAIT ports; they are printed.
exit "$FAILED"
