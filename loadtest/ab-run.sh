#!/usr/bin/env bash
# loadtest/ab-run.sh — an A/B of two partyring builds (and Bun as the peer), interleaved.
#
# Usage: loadtest/ab-run.sh OLD_BIN NEW_BIN [--rounds N] [--duration SECS] [--no-bun] [--floor]
#                                            [--shapes NAME,...]
#
# Each round runs every shape below against OLD, NEW and Bun (and with --floor the floor peer,
# on the shapes it serves), one after another (fresh server per run, server on CPU 0, generator
# on CPU 1, through loadtest/compare with PARTYRING_BIN), so machine noise hits all of them
# alike. Prints per-server-CPU-second means and NEW/OLD, NEW/Bun and NEW/floor ratios
# (loadtest/ab-report.py). Defaults: 3 rounds of 4 s, every shape; ~20 minutes. --shapes picks
# some, e.g. `--shapes http-get --rounds 8` for many cheap rounds of one shape.
# Build OLD from another commit with e.g.
#   git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p partyring --manifest-path /tmp/old/Cargo.toml
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
USAGE="usage: $0 OLD_BIN NEW_BIN [--rounds N] [--duration SECS] [--no-bun] [--floor] [--shapes LIST]"
OLD="${1:?$USAGE}"
NEW="${2:?$USAGE}"
shift 2
ROUNDS=3
DURATION=4
BUN=1
FLOOR=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --no-bun) BUN=0; shift ;;
    --floor) FLOOR=1; shift ;;
    --shapes) ONLY=",$2,"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "ab-run: both binaries must exist" >&2; exit 2; }
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
} > "$OUT/meta.txt"

SHAPES=(
  "fanout-100x16|fanout|--rooms 100 --members 16 --size 64 --publish ws --room-prefix f16"
  "fanout-1x1000|fanout|--rooms 1 --members 1000 --size 64 --publish ws --room-prefix f1k"
  "fanout-1000x10|fanout|--rooms 1000 --members 10 --size 64 --publish ws --room-prefix f10k"
  "echo-100|echo|--conns 100 --size 64"
  "http-get|http|--conns 50 --pipeline 1 --method get --room-prefix get"
  "http-get-p16|http|--conns 50 --pipeline 16 --method get --room-prefix getp"
)

for round in $(seq 1 "$ROUNDS"); do
  for shape in "${SHAPES[@]}"; do
    IFS='|' read -r name scenario args <<<"$shape"
    [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]] && continue
    for side in old new bun floor; do
      [ "$side" = bun ] && [ "$BUN" = 0 ] && continue
      [ "$side" = floor ] && [ "$FLOOR" = 0 ] && continue
      dir="$OUT/r$round/$side/$name"
      mkdir -p "$OUT/r$round/$side"
      echo "######## round $round: $side $name"
      server=partyring
      [ "$side" = bun ] && server=bun
      [ "$side" = floor ] && server=floor
      bin="$OLD"
      [ "$side" = new ] && bin="$NEW"
      PARTYRING_BIN="$bin" bash loadtest/compare --no-build --duration "$DURATION" \
        --servers "$server" --scenarios "$scenario" "--$scenario-args" "$args" --out "$dir" \
        >"$dir.log" 2>&1 || echo "  (run failed: see $dir.log)"
    done
  done
done
python3 loadtest/ab-report.py "$OUT" | tee "$OUT/report.md"
echo "results: $OUT"
