#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, on the pinned nightly) in turn,
# each for SECONDS (default 60) or for N executions (--runs N), with libFuzzer's
# -rss_limit_mb=2048 -timeout=10, and prints each target's execution count. A crash,
# timeout or out-of-memory input stops the script with its reproducer in
# fuzz/artifacts/<target>/; once fixed, add it to fuzz/seeds/<target>/ under a telling
# name, where `cargo test` replays it (crates/nextscale/tests/fuzz_corpus.rs and
# crates/nextscale-wasm/tests/request_corpus.rs replay fuzz/seeds and fuzz/corpus).
#
# Each run starts from the hand-made seeds (fuzz/seeds/<target>/; the model-file targets
# share fuzz/seeds/models/, tiny files from `nextscale init --config`) and the committed
# corpus fuzz/corpus/<target>/, and writes what it finds to fuzz/target/corpus/<target>/
# (ignored). FUZZ_MERGE=1 then minimises the committed corpus with libFuzzer's -merge=1
# over it and the new finds of at most 16 KiB (mutated copies of the seed model files are
# bigger and left out, to keep the repository small).
#
# FUZZ_JOBS=J runs J fuzzing processes per target side by side (libFuzzer's -jobs, each
# with a one-thread rayon pool; --runs N is then per process).
#
# Usage: scripts/fuzz.sh [SECONDS | --runs N] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=60)
case "${1:-}" in
  --runs) limit=(-runs="$2"); shift 2 ;;
  '' | -*) ;;
  *) limit=(-max_total_time="$1"); shift ;;
esac

scripts/setup.sh
toolchain=$(scripts/nightly.sh)
cd fuzz
mapfile -t all < <(cargo +"$toolchain" fuzz list)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Safe Rust: libFuzzer's coverage without AddressSanitizer (which finds nothing more in
# safe code and would double the build and slow every execution).
cargo +"$toolchain" fuzz build -O --sanitizer none

seeds_of() {
  case "$1" in
    model_file | model_load) echo seeds/models ;;
    *) echo "seeds/$1" ;;
  esac
}

jobs=${FUZZ_JOBS:-1}
parallel=()
if [ "$jobs" -gt 1 ]; then
  parallel=(-jobs="$jobs" -workers="$jobs")
  export RAYON_NUM_THREADS=1
fi

# With -jobs, each process logs to fuzz-<n>.log, which libFuzzer copies into its own
# output when the process ends.
remove_job_logs() {
  rm -f fuzz-*.log
}

for target in "${targets[@]}"; do
  work="target/corpus/$target"
  seeds=$(seeds_of "$target")
  mkdir -p "$work" "corpus/$target" "artifacts/$target"
  log="target/fuzz-$target.log"
  printf '[fuzz] %s (%s)\n' "$target" "${limit[*]}" >&2
  if ! cargo +"$toolchain" fuzz run -O --sanitizer none "$target" "$work" "corpus/$target" "$seeds" -- \
    "${limit[@]}" "${parallel[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    remove_job_logs
    tail -n 30 "$log" >&2
    printf '[fuzz] %s FAILED: reproducer in fuzz/artifacts/%s/\n' "$target" "$target" >&2
    exit 1
  fi
  remove_job_logs
  runs=$(awk '/stat::number_of_executed_units/ {s += $2} END {print s}' "$log")
  rss=$(awk '/stat::peak_rss_mb/ {if ($2 > m) m = $2} END {print m}' "$log")
  printf '[fuzz] %s: %s executions, peak RSS %s MB, no crash, timeout or OOM\n' "$target" "$runs" "$rss"
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    small=$(mktemp -d)
    merged=$(mktemp -d)
    find "$work" "corpus/$target" -type f -size -17k -exec cp {} "$small/" \;
    cargo +"$toolchain" fuzz run -O --sanitizer none "$target" "$merged" "$small" -- -merge=1 \
      >>"$log" 2>&1
    rm -rf "corpus/$target" "$small"
    mv "$merged" "corpus/$target"
    chmod 755 "corpus/$target"
    printf '[fuzz] %s: corpus/%s minimised to %s inputs\n' "$target" "$target" "$(ls "corpus/$target" | wc -l)"
  fi
  rmdir "artifacts/$target" 2>/dev/null || true
done
