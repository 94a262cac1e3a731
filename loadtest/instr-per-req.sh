#!/usr/bin/env bash
# The server's own instructions per HTTP request, counted by valgrind (callgrind): a per-op
# counter that the machine's noise cannot move, for keep-or-revert decisions on user-space
# changes (docs/ab-protocol.md, rule 10). Rates and CPU-time splits on this VM move 10-30%
# between rounds; this count repeats to within 0.5%.
#
# Per build and method: the server (`--threads 1 --persist false`) runs under callgrind; a
# warm-up of 20 rounds (GET's room first gets 5 messages), the counters are zeroed, then
# ROUNDS rounds of 20 keep-alive requests (loadtest/instr_client.py: each round one request
# per connection, then every response), then a dump. Prints the instructions per request and
# keeps each dump (callgrind_annotate DUMP shows where they go).
#
#   usage: loadtest/instr-per-req.sh BIN [BIN ...]      (ROUNDS=1000, METHODS="get post")
# Needs valgrind (apt-get install valgrind). Instructions are not time: a cache miss or a
# syscall costs far more than one instruction, so this decides only changes that remove work
# from partyring's own code; the kernel's part and the rate are ab-run.sh's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-1000}"
METHODS="${METHODS:-get post}"
[ $# -ge 1 ] || { echo "usage: instr-per-req.sh BIN [BIN ...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instr-per-req: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
OUT="$ROOT/loadtest/results/instr-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
PORT="${PORT:-4190}"
CLIENT="$ROOT/loadtest/instr_client.py"

vg=""
# The server under valgrind is ours: never left running, whatever stops the script.
trap 'if [ -n "$vg" ]; then kill -9 "$vg" 2>/dev/null || true; fi' EXIT
n=0
for bin in "$@"; do
  n=$((n + 1))
  for method in $METHODS; do
    tag="b$n-$method"
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.%p" \
      "$bin" --threads 1 --persist false --port "$PORT" >"$OUT/$tag.log" 2>&1 &
    vg=$!
    up=""
    for _ in $(seq 150); do
      kill -0 "$vg" 2>/dev/null || break # it exited (the port taken, a bad binary)
      if curl -s -m 1 -o /dev/null "http://127.0.0.1:$PORT/parties/main/r1"; then up=1; break; fi
      sleep 0.2
    done
    if [ -z "$up" ]; then
      kill -9 "$vg" 2>/dev/null || true
      echo "instr-per-req: $bin did not start (see $OUT/$tag.log)" >&2
      exit 1
    fi
    [ "$method" = get ] && python3 "$CLIENT" "$PORT" post 1 5 >/dev/null
    python3 "$CLIENT" "$PORT" "$method" 20 20 >/dev/null
    callgrind_control -z "$vg" >/dev/null 2>&1
    if ! python3 "$CLIENT" "$PORT" "$method" 20 "$ROUNDS" >/dev/null; then
      kill -9 "$vg" 2>/dev/null || true
      echo "instr-per-req: the requests failed against $bin" >&2
      exit 1
    fi
    callgrind_control -d "$vg" >/dev/null 2>&1
    dump=""
    for _ in $(seq 50); do
      dump="$(ls -t "$OUT/$tag".*.* 2>/dev/null | head -1 || true)"
      [ -n "$dump" ] && grep -q '^totals:' "$dump" && break
      sleep 0.2
    done
    kill -9 "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    vg=""
    if [ -z "$dump" ] || ! grep -q '^totals:' "$dump"; then
      echo "instr-per-req: no callgrind dump for $bin $method (see $OUT/$tag.log)" >&2
      exit 1
    fi
    ir="$(grep -h '^totals:' "$dump" | head -1 | awk '{print $2}')"
    printf '%s\t%s\t%s\n' "$method" "$(python3 -c "print(round($ir / ($ROUNDS * 20)))")" "$bin" |
      tee -a "$OUT/instr.tsv"
  done
done
echo "instr-per-req: $OUT (method, instructions per request, build)"
