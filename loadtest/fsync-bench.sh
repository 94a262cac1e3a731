#!/usr/bin/env bash
# POST /parties/main/<room> under each storage setting, back to back in one invocation: the
# cost of durable history (issue 6). Server on CPU 0 (one core), generator on CPU 1; 16
# keep-alive connections, one request in flight each (so group commit has 16 writers to batch).
# Prints one line per setting per round: requests/s and requests per server-CPU-second.
#   usage: loadtest/fsync-bench.sh [rounds] [seconds]     (build first: cargo build --release --workspace)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
SECS="${2:-5}"
SETTINGS=("--fsync always" "--fsync every=10" "--fsync never" "--persist false")
for round in $(seq 1 "$ROUNDS"); do
  for setting in "${SETTINGS[@]}"; do
    D="$(mktemp -d -t partyring-fsync.XXXXXX)"
    # shellcheck disable=SC2086 # the setting is two words on purpose
    taskset -c 0 ./target/release/partyring --port 0 --threads 1 --data-dir "$D/data" $setting \
      >"$D/out" 2>"$D/err" &
    PID=$!
    for _ in $(seq 50); do grep -q listening "$D/out" && break; sleep 0.1; done
    ADDR="$(grep -o 'http://[0-9.:]*' "$D/out")"
    ./target/release/partyring-load --url "$ADDR" --server-pid "$PID" --duration "$SECS" \
      --warmup 1 --cpu 1 --json "$D/r.json" \
      http --method post --conns 16 --pipeline 1 --room-prefix fsync >/dev/null 2>&1
    python3 - "$D/r.json" "$setting" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"round {sys.argv[3]}  {sys.argv[2]:18s} {r['rate']:>9.0f} req/s  {r['per_server_cpu_sec']:>9.0f} req per server-CPU-s")
PY
    kill "$PID"; wait "$PID" 2>/dev/null || true
    rm -rf "$D"
  done
done
