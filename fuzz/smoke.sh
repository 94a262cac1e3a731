#!/usr/bin/env bash
# Fuzz smoke for CI: replays every saved reproducer in fuzz/regressions/, then runs each
# cargo-fuzz target for a short time (FUZZ_SECONDS, default 25) on one core. Exits non-zero if
# any reproducer or target fails (crash, panic, leak, timeout, OOM) or a build fails.
#
# Needs: the Rust toolchain. Installs cargo-fuzz if missing. The stable toolchain is told to
# accept the nightly-only flags cargo-fuzz passes (sanitizers, -Z) with RUSTC_BOOTSTRAP=1.
#
# Usage: bash fuzz/smoke.sh [target ...]     (default: every target)
set -uo pipefail
FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-25}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cargo install cargo-fuzz || exit 1
fi

if [ "$#" -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(cd "$FUZZ_DIR" && cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
  echo "no fuzz targets found"; exit 1
fi

# libFuzzer with -jobs=1 writes fuzz-0.log into the working directory: keep it out of the tree.
WORK="$(mktemp -d -t partyring-fuzz.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

run() { cargo fuzz run --fuzz-dir "$FUZZ_DIR" "$@"; }

echo "==== build ${TARGETS[*]}"
cargo fuzz build --fuzz-dir "$FUZZ_DIR" || exit 1

passed=0
failed=0
failures=()
start_all=$(date +%s)
for t in "${TARGETS[@]}"; do
  ok=1
  for repro in "$FUZZ_DIR"/regressions/"$t"-*; do
    [ -e "$repro" ] || continue
    echo "==== $t: replay $(basename "$repro")"
    if ! run "$t" "$repro" -- -runs=1 >"$WORK/replay.log" 2>&1; then
      grep -E "panicked|ERROR|SUMMARY" "$WORK/replay.log" | head -5
      ok=0
    fi
  done
  dict=()
  [ -f "$FUZZ_DIR/dict/$t.dict" ] && dict=("-dict=$FUZZ_DIR/dict/$t.dict")
  echo "==== $t: fuzz ${SECONDS_PER_TARGET}s"
  t0=$(date +%s)
  if run "$t" -- "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -jobs=1 \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$WORK/$t.log" 2>&1; then
    grep -E "^#[0-9]+ +DONE|^Done " "$WORK/$t.log" | tail -2
  else
    grep -E "panicked|ERROR|SUMMARY|Test unit written|^#[0-9]+ +DONE" "$WORK/$t.log" | head -8
    ok=0
  fi
  echo "     ($(( $(date +%s) - t0 ))s)"
  if [ "$ok" = 1 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$t")
  fi
done

echo "==== fuzz smoke took $(( $(date +%s) - start_all ))s after the build"
[ "$failed" -gt 0 ] && echo "failed targets: ${failures[*]} (crash inputs under $FUZZ_DIR/artifacts/)"
echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
