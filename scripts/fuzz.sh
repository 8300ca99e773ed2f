#!/bin/bash
# Runs every cargo-fuzz target in fuzz/ (the [[bin]] entries of
# fuzz/Cargo.toml) for a given time each, one after another, and prints
# one line per target: its executions, executions per second and whether
# it found a failure. Exit status 0 only when no target failed.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60; 10 million executions of the slowest
#                       target (e1000, emulate) take tens of minutes
#   TARGET...           only these targets (default: every one)
#
# Environment (all optional):
#   FUZZ_RUNS        run each target for this many executions instead of
#                    for a time (libFuzzer's -runs; SECONDS_PER_TARGET is
#                    then ignored), e.g. FUZZ_RUNS=10000000 for the closing
#                    note's ten million per target
#   FUZZ_SANITIZER   cargo fuzz's -s (default: none: the code is safe Rust;
#                    overflow checks stay on in cargo fuzz's build)
#   FUZZ_TOOLCHAIN   the toolchain (default: nightly when rustup has it,
#                    else stable with RUSTC_BOOTSTRAP=1)
#   FUZZ_LOG_DIR     where each target's libFuzzer log goes (default: a
#                    temporary directory, kept and named at the end)
#
# Corpora stay in fuzz/corpus/<target> (ignored by git) between runs; a
# crash is saved in fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
case $seconds in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, not \`$seconds'" >&2; exit 2 ;;
esac

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(awk '/^\[\[bin\]\]/{bin=1} bin && /^name *=/{gsub(/[" ]/,"",$0); sub(/name=/,"",$0); print; bin=0}' Cargo.toml)
fi

toolchain=()
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
  toolchain=("+$FUZZ_TOOLCHAIN")
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

budget=(-max_total_time="$seconds")
runs_wanted=${FUZZ_RUNS:-}
case $runs_wanted in
  '') ;;
  *[!0-9]*) echo "fuzz.sh: FUZZ_RUNS must be a whole number, not \`$runs_wanted'" >&2; exit 2 ;;
  *) budget=(-runs="$runs_wanted") ;;
esac

logs=${FUZZ_LOG_DIR:-$(mktemp -d /tmp/exitlab-fuzz.XXXXXX)}
mkdir -p "$logs"
# Build once, so that each target's time below is its own fuzzing time.
cargo "${toolchain[@]}" fuzz build -s "${FUZZ_SANITIZER:-none}" --release >"$logs/build.log" 2>&1 ||
  { echo "fuzz.sh: cargo fuzz build failed; see $logs/build.log" >&2; exit 1; }
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$logs/$t.log"
  status=ok
  start=$(date +%s)
  if ! cargo "${toolchain[@]}" fuzz run -s "${FUZZ_SANITIZER:-none}" --release "$t" "corpus/$t" -- \
      "${budget[@]}" -print_final_stats=1 \
      >"$log" 2>&1; then
    status=FAILED
    failed=$((failed + 1))
  fi
  took=$(( $(date +%s) - start ))
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s += $2} END {print s + 0}')
  printf '%-12s %12d executions in %ss (%d/s) %s\n' "$t" "$runs" "$took" $((runs / (took > 0 ? took : 1))) "$status"
done
echo "logs: $logs"
[ "$failed" -eq 0 ]
