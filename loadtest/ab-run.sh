#!/usr/bin/env bash
# loadtest/ab-run.sh — the A/B protocol (docs/ab-protocol.md): two partyring builds, Bun as the
# peer (and with --floor the floor), interleaved rounds, medians with their spread and the
# kernel counters per operation.
#
# Usage: loadtest/ab-run.sh OLD_BIN NEW_BIN [--rounds N] [--duration SECS] [--warmup SECS]
#                                            [--no-bun] [--no-old] [--floor] [--floor-uring]
#                                            [--shapes NAME,...]
#                                            [--min-cpu PCT]
#
# Each round runs every shape below against OLD, NEW and Bun (and the floor on the shapes it
# serves; with --floor-uring also the floor on io_uring, side `flooru'), each run on a fresh server (server on CPU 0, load on CPU 1, through loadtest/compare
# with PARTYRING_BIN), so machine noise hits all sides alike; the order of the sides rotates
# from round to round so that no side always runs first. After every run one line gives its
# figure per server-CPU-second, the server's CPU share and the kernel events per op. Then
# loadtest/ab-report.py prints the medians (min-max), the ratios, whether NEW beat OLD in every
# round, and writes a ratio plot per shape (DIR/ratio-<shape>.svg).
# The one-in-flight fan-out shapes (fanout-{100x16,1x1000,1000x10}-b1: --batch 1), the
# immediate-send ones (fanout-{...}-imm: --send immediate) and the
# permessage-deflate shapes (fanout-deflate-{on,off}-{512,2000,4096}, echo-deflate-{on,off}-512)
# run only when --shapes names them, e.g. `--shapes fanout-deflate-on-512,fanout-deflate-off-512`;
# DEFLATE_INFLATE_SAMPLE=N (passed on to compare) lets one receiver in N inflate on the `on' ones;
# DEFLATE_CLIENT=composed (passed on too) has the fanout generator compose its compressed
# messages instead of deflating each (partyring-load --client-deflate).
# Defaults: 5 rounds of 4 s (+1 s warm-up), every shape: ~25 minutes. --shapes picks some, e.g.
# `--shapes wrk-get-c20,wrk-post-c20 --rounds 8` for many cheap rounds of the HTTP headline.
# Fewer than 5 rounds is refused: the protocol's smallest sample. --no-old runs NEW against the
# peers only (OLD_BIN is then ignored; pass NEW_BIN twice): for a targets table, not a keep-or-revert.
# Build OLD from another commit with e.g.
#   git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p partyring --manifest-path /tmp/old/Cargo.toml
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
USAGE="usage: $0 OLD_BIN NEW_BIN [--rounds N] [--duration SECS] [--warmup SECS] [--no-bun] [--no-old] [--floor] [--floor-uring] [--shapes LIST] [--min-cpu PCT]"
OLD="${1:?$USAGE}"
NEW="${2:?$USAGE}"
shift 2
ROUNDS=5
DURATION=4
WARMUP=1
MIN_CPU=90
BUN=1
OLD_SIDE=1
FLOOR=0
FLOOR_URING=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --min-cpu) MIN_CPU="$2"; shift 2 ;;
    --no-bun) BUN=0; shift ;;
    --no-old) OLD_SIDE=0; shift ;;
    --floor) FLOOR=1; shift ;;
    --floor-uring) FLOOR_URING=1; shift ;;
    --shapes) ONLY=",$2,"; shift 2 ;;
    *) echo "unknown argument $1" >&2; echo "$USAGE" >&2; exit 2 ;;
  esac
done
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "ab-run: both binaries must exist" >&2; exit 2; }
[ "$ROUNDS" -ge 5 ] 2>/dev/null || { echo "ab-run: --rounds must be at least 5 (docs/ab-protocol.md)" >&2; exit 2; }

# name|scenario|generator arguments (empty: compare's own shape, e.g. the wrk ones)
SHAPES=(
  "fanout-100x16|fanout|--rooms 100 --members 16 --size 64 --publish ws --room-prefix f16"
  "fanout-1x1000|fanout|--rooms 1 --members 1000 --size 64 --publish ws --room-prefix f1k"
  "fanout-1000x10|fanout|--rooms 1000 --members 10 --size 64 --publish ws --room-prefix f10k"
  "echo-100|echo|--conns 100 --size 64"
  "echo-500|echo|--conns 500 --size 64"
  "http-get|http|--conns 50 --pipeline 1 --method get --room-prefix get"
  "http-get-p16|http|--conns 50 --pipeline 16 --method get --room-prefix getp"
  "wrk-get-c20|wrk-get-c20|"
  "wrk-get-c100|wrk-get-c100|"
  "wrk-post-c20|wrk-post-c20|"
  "wrk-post-c100|wrk-post-c100|"
  "load-get-c20|load-get-c20|"
  "load-post-c20|load-post-c20|"
)
# Run only when --shapes names them: permessage-deflate (compare's KIND-deflate-MODE-SIZE
# shapes), chat JSON, server compression on (the generator requires the extension) and off (it
# offers, the server declines).
OPT_SHAPES=(
  # One message in flight per room (closed loop, --batch 1) instead of 16.
  "fanout-100x16-b1|fanout|--rooms 100 --members 16 --size 64 --publish ws --batch 1 --room-prefix f16b"
  "fanout-1x1000-b1|fanout|--rooms 1 --members 1000 --size 64 --publish ws --batch 1 --room-prefix f1kb"
  "fanout-1000x10-b1|fanout|--rooms 1000 --members 10 --size 64 --publish ws --batch 1 --room-prefix f10kb"
  # The same 16-in-flight fan-outs with the other client pattern: a room's next round leaves
  # the moment its last delivery arrives (--send immediate), not at the end of the loop turn.
  "fanout-100x16-imm|fanout|--rooms 100 --members 16 --size 64 --publish ws --send immediate --room-prefix f16i"
  "fanout-1x1000-imm|fanout|--rooms 1 --members 1000 --size 64 --publish ws --send immediate --room-prefix f1ki"
  "fanout-1000x10-imm|fanout|--rooms 1000 --members 10 --size 64 --publish ws --send immediate --room-prefix f10ki"
  "fanout-deflate-on-512|fanout-deflate-on-512|"
  "fanout-deflate-off-512|fanout-deflate-off-512|"
  "fanout-deflate-on-2000|fanout-deflate-on-2000|"
  "fanout-deflate-off-2000|fanout-deflate-off-2000|"
  "fanout-deflate-on-4096|fanout-deflate-on-4096|"
  "fanout-deflate-off-4096|fanout-deflate-off-4096|"
  "echo-deflate-on-512|echo-deflate-on-512|"
  "echo-deflate-off-512|echo-deflate-off-512|"
)
if [ -n "$ONLY" ]; then
  for want in ${ONLY//,/ }; do
    found=0
    for shape in "${SHAPES[@]}" "${OPT_SHAPES[@]}"; do [ "${shape%%|*}" = "$want" ] && found=1; done
    [ "$found" = 1 ] || { echo "ab-run: unknown shape $want" >&2; exit 2; }
  done
fi

cargo build --release -p partyring-load -p partyring-floor
OUT="$ROOT/loadtest/results/ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
{
  echo "old: $OLD"
  echo "new: $NEW"
  echo "commit (this tree): $(git rev-parse --short HEAD)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine: $(nproc) vCPU, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rounds: $ROUNDS, duration: ${DURATION}s, warm-up: ${WARMUP}s, min server CPU: $MIN_CPU%"
} > "$OUT/meta.txt"

SIDES=(new)
[ "$OLD_SIDE" = 1 ] && SIDES=(old new)
[ "$BUN" = 1 ] && SIDES+=(bun)
[ "$FLOOR" = 1 ] && SIDES+=(floor)
[ "$FLOOR_URING" = 1 ] && SIDES+=(flooru)

for round in $(seq 1 "$ROUNDS"); do
  # Rotate the order of the sides by one each round.
  k=$(( (round - 1) % ${#SIDES[@]} ))
  order=("${SIDES[@]:k}" "${SIDES[@]:0:k}")
  for shape in "${SHAPES[@]}" ${ONLY:+"${OPT_SHAPES[@]}"}; do
    IFS='|' read -r name scenario args <<<"$shape"
    [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]] && continue
    for side in "${order[@]}"; do
      dir="$OUT/r$round/$side/$name"
      mkdir -p "$OUT/r$round/$side"
      server=partyring
      [ "$side" = bun ] && server=bun
      [ "$side" = floor ] && server=floor
      [ "$side" = flooru ] && server=floor-uring
      bin="$OLD"
      [ "$side" = new ] && bin="$NEW"
      # Empty arguments: compare's own defaults for the shape.
      over=()
      [ -n "$args" ] && over=("--$scenario-args" "$args")
      PARTYRING_BIN="$bin" bash loadtest/compare --no-build --duration "$DURATION" \
        --warmup "$WARMUP" --min-cpu "$MIN_CPU" --servers "$server" --scenarios "$scenario" \
        ${over[@]+"${over[@]}"} --out "$dir" >"$dir.log" 2>&1 || echo "  (run failed: see $dir.log)"
      if grep -q ": skipped (" "$dir.log"; then
        rm -rf "$dir" "$dir.log" # the floor does not serve this shape
        continue
      fi
      python3 - "$dir" "$round" "$side" "$name" "$MIN_CPU" <<'PY'
import glob, sys
sys.path.insert(0, "loadtest")
from compare_report import fmt, load_run, saturated
d, rnd, side, name, min_cpu = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
files = glob.glob(f"{d}/*.json")
r = load_run(files[0]) if files else None
if r is None:
    print(f"round {rnd} {side:5} {name}: no result (see {d}.log)")
else:
    flag = "" if saturated(r, min_cpu) else "  UNSATURATED"
    flag += "" if r["ok"] else "  INTEGRITY FAILED"
    print(f"round {rnd} {side:5} {name}: {fmt(r['per_cpu'])}/server-CPU-s, server CPU {fmt(r['srv_pct'], 0)}% (ksoftirqd {fmt(r['softirqd_pct'], 0)}%), "
          f"per op: RES {fmt(r['res'], 3)}, cs {fmt(r['cs'], 3)}, cycles {fmt(r['cycles'], 0)}, syscalls {fmt(r['syscalls'], 3)}, "
          f"CPU us user {fmt(r['user_us'])} kernel {fmt(r['kernel_us'])}{flag}")
PY
    done
  done
done
python3 loadtest/ab-report.py "$OUT" --min-cpu "$MIN_CPU" | tee "$OUT/report.md"
echo "results: $OUT"
