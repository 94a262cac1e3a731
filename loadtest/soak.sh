#!/usr/bin/env bash
# loadtest/soak.sh [MINUTES] — a soak test against a durable server (default 10 minutes).
#
# Starts partyring with --fsync always on a fresh data dir, then for MINUTES runs at once:
#   - idle:   SOAK_IDLE (500) WebSockets held open in `main` rooms;
#   - fanout: 20 rooms x 8 members, SOAK_RATE (200) publishes/s of 1 KiB over WebSocket (stored
#             and broadcast; partyring-load checks every delivery: nothing lost, duplicated,
#             reordered). With the history capped at 50 messages per room the logs are
#             compacted every few seconds, from the first ~10 s on, so compaction runs under
#             load and its memory is in the warm-up baseline;
#   - churn:  SOAK_CHURN (50) WebSockets connected, echoed and closed, cycle after cycle;
#   - POSTs:  SOAK_POST_RATE (50)/s of unique messages to 50 rooms (loadtest/soak.py).
# Every 10 s it samples the server's RSS, open fds and /metrics counters (printed, and kept in
# samples.tsv). It fails if any load reports an error, if RSS or fds grow after warm-up (a fifth
# of the run, at least 20 s), if the fds do not come back once the load stops, if a storage
# failure is counted, or if any acknowledged POST is missing from its room's history, checked
# before and after a restart of the server on the same data dir.
#
# Binaries: $BIN (default: target/release, built first). Loopback only; every loop is
# bounded by the deadline. Output directory: $SOAK_OUT (default a fresh temp dir), kept.
set -euo pipefail
MINUTES="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${BIN:-}" ]; then
  BIN="$ROOT/target/release"
  (cd "$ROOT" && cargo build --release -p partyring -p partyring-load)
fi
SERVER="$BIN/partyring"
LOAD="$BIN/partyring-load"
IDLE="${SOAK_IDLE:-500}"
RATE="${SOAK_RATE:-200}"
CHURN="${SOAK_CHURN:-50}"
POST_RATE="${SOAK_POST_RATE:-50}"
LIMIT=50
DURATION=$(( MINUTES * 60 ))
WARMUP=$(( DURATION / 5 > 20 ? DURATION / 5 : 20 ))
OUT="${SOAK_OUT:-$(mktemp -d -t partyring-soak.XXXXXX)}"
mkdir -p "$OUT"
DATA="$OUT/data"
echo "soak: $MINUTES min, output in $OUT"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts the server on DATA; sets ADDR and SRV_PID.
start_server() {
  local log="$OUT/server.log"
  "$SERVER" --port 0 --threads 2 --data-dir "$DATA" --fsync always \
    --history-limit "$LIMIT" >"$log.stdout" 2>>"$log" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  ADDR=""
  for _ in $(seq 1 100); do
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$log.stdout" | head -n1 | sed 's|.*http://||')" || true
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  echo "soak: server did not start"; cat "$log"; exit 1
}

fds() { ls "/proc/$SRV_PID/fd" | wc -l; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$SRV_PID/status"; }
metric() { # the all-cores value of a metric
  curl -s "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

start_server
sleep 1
FDS_BEFORE="$(fds)"
START=$(date +%s)
DEADLINE=$(( START + DURATION ))
left() { echo $(( DEADLINE - $(date +%s) )); }
common=(--url "ws://$ADDR" --server-pid "$SRV_PID" --cpu -1)

# Each load runs in runs of at most 600 s (the generator's bound) until the deadline.
(
  k=0
  while [ "$(left)" -gt 2 ]; do
    hold=$(( $(left) < 600 ? $(left) : 600 ))
    "$LOAD" "${common[@]}" idle --conns "$IDLE" --rooms 50 --party main \
      --room-prefix "soak-idle-$k" --hold "$hold" >>"$OUT/idle.log" 2>&1
    k=$(( k + 1 ))
  done
) & LOADS=($!)
(
  k=0
  while [ "$(left)" -gt 5 ]; do
    d=$(( $(left) - 3 < 600 ? $(left) - 3 : 600 ))
    "$LOAD" "${common[@]}" fanout --rooms 20 --members 8 --rate "$RATE" --size 1024 --warmup 0 \
      --duration "$d" --room-prefix "soak-fan-$k" >>"$OUT/fanout.log" 2>&1
    k=$(( k + 1 ))
  done
) & LOADS+=($!)
# Churn checks that the server's fds come back to where they were when each run started, so it
# starts once the other loads are connected and stops well before they end.
(
  sleep 5
  while [ "$(left)" -gt 15 ]; do
    "$LOAD" "${common[@]}" churn --conns "$CHURN" --cycles 5 >>"$OUT/churn.log" 2>&1
    sleep 1
  done
) & LOADS+=($!)
python3 "$ROOT/loadtest/soak.py" post "$ADDR" "$(( DURATION - 2 ))" "$LIMIT" 50 "$POST_RATE" \
  "$OUT/acked.json" >>"$OUT/posts.log" 2>&1 & LOADS+=($!)

printf 't\trss_kib\tfds\tconns\tws_msgs\tfsyncs\tstorage_failures\tlost\n' >"$OUT/samples.tsv"
printf '%6s %10s %6s %7s %10s %8s %8s %5s\n' t rss_kib fds conns ws_msgs fsyncs failures lost
# Samples while every load runs (not in the last seconds, when they wind down).
while [ "$(left)" -ge 15 ]; do
  sleep 10
  row="$(( $(date +%s) - START ))\t$(rss_kib)\t$(fds)\t$(metric partyring_connections_open)\t$(metric partyring_ws_messages_received_total)\t$(metric partyring_storage_fsyncs_total)\t$(metric partyring_storage_failures_total)\t$(metric partyring_storage_lost_records_total)"
  printf "$row\n" >>"$OUT/samples.tsv"
  printf "$row\n" | awk -F'\t' '{ printf "%6s %10s %6s %7s %10s %8s %8s %5s\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
done

sleep "$(left)"
status=0
for p in "${LOADS[@]}"; do
  wait "$p" || status=1
done
grep -h "integrity\|fds returned\|error" "$OUT"/fanout.log "$OUT"/churn.log | sort | uniq -c || true
if [ "$status" -ne 0 ]; then
  echo "soak: FAILED: a load reported an error (logs in $OUT)"
  tail -n 20 "$OUT"/*.log
  exit 1
fi
cat "$OUT/posts.log"
sleep 5
FDS_AFTER="$(fds)"
python3 "$ROOT/loadtest/soak.py" verdict "$OUT/samples.tsv" "$WARMUP" "$CHURN" "$FDS_BEFORE" "$FDS_AFTER"
python3 "$ROOT/loadtest/soak.py" check "$ADDR" "$OUT/acked.json"

# Restart on the same data: the acknowledged messages must all come back.
kill -TERM "$SRV_PID"
wait "$SRV_PID" || true
start_server
python3 "$ROOT/loadtest/soak.py" check "$ADDR" "$OUT/acked.json"
echo "soak: PASSED ($MINUTES min)"
