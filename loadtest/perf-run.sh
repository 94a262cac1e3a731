#!/usr/bin/env bash
# loadtest/perf-run.sh — the runs behind PERF.md, in one command.
#
# Every variant is one `loadtest/compare` invocation (fresh server per run, server pinned to
# CPU 0, generator to CPU 1, results as JSON), into loadtest/results/perf-<timestamp>/<variant>/.
# Then loadtest/perf-report.py prints the markdown tables and writes the SVG plots.
#
# Usage: loadtest/perf-run.sh [--duration SECS] [--servers LIST]   (defaults: 5, all four)
# Takes ~15 minutes. All traffic stays on loopback.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION=5
SERVERS="partyring,bun,partykit,floor"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --servers) SERVERS="$2"; shift 2 ;;
    *) echo "usage: $0 [--duration SECS] [--servers LIST]" >&2; exit 2 ;;
  esac
done
OUT="$ROOT/loadtest/results/perf-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release --workspace
{
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src loadtest || echo ' (+ uncommitted changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/meta.txt"

run() { # variant servers scenario args
  local variant="$1" servers="$2" scenario="$3" args="$4"
  echo "######## $variant: $scenario $args"
  bash loadtest/compare --no-build --duration "$DURATION" --servers "$servers" \
    --scenarios "$scenario" "--$scenario-args" "$args" --out "$OUT/$variant" || true
}

ALL="$SERVERS"
NO_PK="$(echo "$SERVERS" | tr ',' '\n' | grep -v partykit | paste -sd, -)"
run fanout-100x16 "$ALL" fanout "--rooms 100 --members 16 --size 64 --publish ws --room-prefix f16"
run fanout-1x1000 "$ALL" fanout "--rooms 1 --members 1000 --size 64 --publish ws --room-prefix f1k"
# 10,000 connections: PartyKit dev is left out (its single workerd isolate does not take 10k
# sockets in a bounded time here; see PERF.md).
run fanout-1000x10 "$NO_PK" fanout "--rooms 1000 --members 10 --size 64 --publish ws --room-prefix f10k"
run fanout-http-100x16 "$ALL" fanout-http "--rooms 100 --members 16 --size 64 --publish http --room-prefix fh"
run echo-100 "$ALL" echo "--conns 100 --size 64"
run http-get "$ALL" http "--conns 50 --pipeline 1 --method get --room-prefix get"
run http-get-p16 "$ALL" http "--conns 50 --pipeline 16 --method get --room-prefix getp"
run http-post "$ALL" http "--conns 50 --pipeline 1 --method post --size 64 --room-prefix post"
# The HTTP headline: wrk, one room (5 messages for GET), beside partyring-load's immediate and
# batched sends on the same shape. The floor serves none of these (see compare --help).
NO_FLOOR="$(echo "$SERVERS" | tr ',' '\n' | grep -v floor | paste -sd, -)"
for shape in wrk-get-c20 wrk-get-c100 wrk-post-c20 wrk-post-c100 load-get-c20 batch-get-c20 load-post-c20 batch-post-c20; do
  run "$shape" "$NO_FLOOR" "$shape" ""
done
# Open-loop latency with 10,000 connections (1000 rooms x 10), a sweep of publish rates.
run latency-1000x10 "$NO_PK" fanout "--rooms 1000 --members 10 --size 64 --publish ws --sweep 5000,10000,20000,40000 --room-prefix lat"
python3 loadtest/perf-report.py "$OUT" | tee "$OUT/report.md"
echo "results: $OUT"
