#!/usr/bin/env bash
# Idle WebSocket memory, two builds interleaved (issue 13, item 5; PERF.md §1j, §1s).
#
# Per round and per build (the order alternates each round), for each room spread: a fresh
# server (`--port 0 --threads 1 --persist false` plus SERVER_ARGS), then `partyring-load idle`
# with 19,000 connections from two processes, held 4 s, and the generator's "server RSS" line:
# the server's RSS before and after the connections, divided by their number. Every run uses
# its own pair of source addresses (127.0.N.1, 127.0.N.2, N counting up from BASE): the last
# run's TIME_WAIT sockets would collide. At the end: each build's runs and median per spread.
#
#   usage: loadtest/idle-ab.sh OLD_BIN NEW_BIN [rounds] [spreads]   (default 5 rounds, "1 100")
#   SERVER_ARGS="--ws-ping-interval 30"  extra server flags for both builds
#   BASE=60                              the first N of the source addresses (60-250)
# Writes loadtest/results/idle-<UTC stamp>/ (runs.tsv and each run's output). Exits 1 when a
# run failed (a server that did not start, a connection that did not open).
# Build the generator first: cargo build --release --workspace.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OLD="${1:?usage: idle-ab.sh OLD_BIN NEW_BIN [rounds] [spreads]}"
NEW="${2:?usage: idle-ab.sh OLD_BIN NEW_BIN [rounds] [spreads]}"
ROUNDS="${3:-5}"
SPREADS="${4:-1 100}"
GEN="$ROOT/target/release/partyring-load"
N="${BASE:-60}"
[ -x "$OLD" ] && [ -x "$NEW" ] && [ -x "$GEN" ] || {
  echo "idle-ab: OLD, NEW and $GEN must be executables" >&2
  exit 2
}
OUT="$ROOT/loadtest/results/idle-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
printf 'round\tbuild\trooms\tbytes_per_conn\n' >"$OUT/runs.tsv"
read -r -a EXTRA <<<"${SERVER_ARGS:-}"

# One run: BUILD_NAME BIN ROOMS ROUND. Appends a line to runs.tsv.
run() {
  local name=$1 bin=$2 rooms=$3 round=$4 tag srv port pid i bytes
  [ "$N" -le 250 ] || { echo "idle-ab: out of source addresses (BASE + runs > 250)" >&2; exit 2; }
  tag="r$round-$name-$rooms"
  srv="$OUT/$tag.server.log"
  "$bin" --port 0 --threads 1 --persist false ${EXTRA[@]+"${EXTRA[@]}"} >"$srv" 2>&1 &
  pid=$!
  port=""
  for i in $(seq 100); do
    port="$(grep -o 'http://127.0.0.1:[0-9]*' "$srv" | head -1 | cut -d: -f3 || true)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    kill "$pid" 2>/dev/null || true
    echo "idle-ab: $tag: the server did not start (see $srv)" >&2
    exit 1
  fi
  timeout 120 "$GEN" --url "ws://127.0.0.1:$port" --server-pid "$pid" --cpu -1 idle \
    --conns 19000 --hold 4 --procs 2 --source-ips "127.0.$N.1,127.0.$N.2" --rooms "$rooms" \
    >"$OUT/$tag.out" 2>"$OUT/$tag.err" || true
  N=$((N + 1))
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q 'ok=19000 failed=0' "$OUT/$tag.out" || {
    echo "idle-ab: $tag: not every connection opened (see $OUT/$tag.out)" >&2
    exit 1
  }
  bytes="$(grep -o 'server RSS: .*([0-9]* bytes/conn)' "$OUT/$tag.out" | grep -o '([0-9]*' | tr -d '(' || true)"
  [ -n "$bytes" ] || {
    echo "idle-ab: $tag: no server RSS line (see $OUT/$tag.out)" >&2
    exit 1
  }
  printf '%s\t%s\t%s\t%s\n' "$round" "$name" "$rooms" "$bytes" | tee -a "$OUT/runs.tsv"
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for name in $order; do
    bin="$OLD"
    [ "$name" = new ] && bin="$NEW"
    for rooms in $SPREADS; do
      run "$name" "$bin" "$rooms" "$round"
    done
  done
done

python3 - "$OUT/runs.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for rooms in sorted({r["rooms"] for r in rows}, key=int):
    for build in ("old", "new"):
        v = [int(r["bytes_per_conn"]) for r in rows if r["rooms"] == rooms and r["build"] == build]
        print(f"rooms {rooms:>3}  {build}: median {statistics.median(v):.0f} B "
              f"(runs {', '.join(map(str, v))}; over 512 B: {sum(x > 512 for x in v)})")
PY
echo "idle-ab: $OUT"
