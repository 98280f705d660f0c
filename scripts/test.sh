#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Rust unit/integration/parity tests (the core's
# layering check, the CLI's bad-input matrix and the replayed fuzz corpora among them), a
# smoke run of every fuzz target, the wasm engine's tests in node (flex CPU, the SIMD128
# kernels) and in headless Chromium (WebGPU), and the end-to-end tests of the built demo
# page in Chromium (the threaded CPU build among them); then prints one `N passed, N failed`
# line, and how long each stage took.
#
# Building dominates the run on 2 cores, so each build serves as much as it can:
# - clippy lints the workspace's crates while they compile for the tests (clippy-driver as
#   cargo's workspace wrapper with `-D warnings`, what `cargo clippy -- -D warnings` sets up),
#   instead of a second, check-only build of every dependency per target;
# - one native build serves the whole workspace, nextscale-wasm's native request corpus
#   included;
# - the two nightly builds, each in a target directory of its own, run in the background
#   where a core is often idle: the fuzz smoke beside the native stage, the threaded wasm
#   build beside the native tests and the wasm engine's node tests;
# - nothing is built incrementally (CARGO_INCREMENTAL=0): every build here is a first one.
#
# Extra fixture directories: NEXTSCALE_FIXTURES=a:b.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_INCREMENTAL=0

timings=()
stage=""
stage_start=$SECONDS
# Starts a stage: closes the previous one's timing, then prints the new one's name.
step() {
  [ -n "$stage" ] && timings+=("$(printf '%6d s  %s' $((SECONDS - stage_start)) "$stage")")
  stage=$*
  stage_start=$SECONDS
  printf '\n==> %s\n' "$*"
}

step "scripts/setup.sh"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# Lints as `cargo clippy -- -D warnings` does, for the workspace's own crates only.
clippy_driver=$(rustup which clippy-driver)
with_clippy() {
  RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS='-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__' "$@"
}

# Starts COMMAND in the background, in a session of its own (one kill ends it and its
# children), its output into LOG; sets bg_pid. Usage: background LOG COMMAND...
bg_pids=()
background() {
  local log=$1
  shift
  printf '\n==> in the background, into %s: %s\n' "$log" "$*"
  setsid --wait "$@" >"$log" 2>&1 &
  bg_pid=$!
  bg_pids+=("$bg_pid")
}
# Waits for a background command; if it failed, prints its log and stops. Usage: await PID LOG
await() {
  if ! wait "$1"; then
    cat "$2"
    exit 1
  fi
}
trap 'for p in "${bg_pids[@]}"; do kill -- -"$p" 2>/dev/null || true; done' EXIT

mkdir -p target
fuzz_log=target/fuzz-smoke.log
background "$fuzz_log" bash -c 'scripts/fuzz.sh 5 && echo "fuzz smoke: every target for 5 s, $SECONDS s in all"'
fuzz_pid=$bg_pid

# The whole workspace without default features: the CLI still turns on the core's, and
# nextscale-wasm builds without WebGPU, as its request corpus needs (its wasm-only tests
# compile to nothing natively). The wgpu test runs on lavapipe; the shortest autotune keeps
# it quick without changing results.
native_tests=(env CUBECL_AUTOTUNE_LEVEL=minimal cargo test --locked --workspace --no-default-features)
step "native build of the tests (linted by clippy -D warnings as it builds)"
with_clippy "${native_tests[@]}" --no-run

threads_log=target/threads-build.log
background "$threads_log" node pkg/scripts/build.mjs --dev --threads-only
threads_pid=$bg_pid

step "cargo test (native)"
with_clippy "${native_tests[@]}" 2>&1 | tee target/test-output.log

step "fuzz smoke: its background run"
await "$fuzz_pid" "$fuzz_log"
grep -E '^\[fuzz\] .*executions|^fuzz smoke: ' "$fuzz_log"
printf 'fuzz smoke: %s passed; 0 failed\n' "$(grep -c 'no crash, timeout or OOM' "$fuzz_log")" |
  tee -a target/test-output.log

# One dev-profile wasm build of the test binary serves both runs; the fixture parity runs in
# wasm on flex (node) and on SwiftShader's WebGPU (Chromium, flags in webdriver.json).
step "wasm-pack test --node (flex CPU; nextscale-wasm linted for wasm32 as it builds)"
with_clippy wasm-pack test --node crates/nextscale-wasm --locked -- --nocapture 2>&1 | tee -a target/test-output.log

# Only the WebGPU test: the CPU tests ran in node above, and in a page their long
# synchronous runs on the main thread starve the test runner's polling (the demo page's
# tests cover the CPU engine in Chromium, on a worker).
step "wasm-pack test --headless --chrome (WebGPU)"
# The background threaded build ends here, so the browser runs from here on, which have
# timeouts, get both cores. SwiftShader's run of the fixtures took about 2 min on the Intel
# machines and over 300 s on a 2-core AMD EPYC (the runner's timeout, not an assertion).
await "$threads_pid" "$threads_log"
CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_TIMEOUT=900 \
  with_clippy wasm-pack test --headless --chrome crates/nextscale-wasm --locked -- --nocapture webgpu 2>&1 |
  tee -a target/test-output.log

step "npm package (dev wasm builds: single-threaded, and threaded on the pinned nightly) and demo page"
scripts/models.sh "${CARGO_TARGET_DIR:-target}/debug/nextscale"
# Under the wrapper, the single-threaded build reuses the wasm test build's crates.
with_clippy npm run build:dev -w pkg
npm run build -w web

step "demo page in Chromium (playwright-core)"
node --test --test-reporter=tap tests/browser/ 2>&1 | tee target/browser-tests.log
printf 'browser tests: %s passed; %s failed\n' \
  "$(awk '/^# pass/ {print $3}' target/browser-tests.log)" \
  "$(awk '/^# fail/ {print $3}' target/browser-tests.log)" | tee -a target/test-output.log

step "done"
printf '\nstage times:\n'
printf '%s\n' "${timings[@]}"

passed=$(grep -oE '[0-9]+ passed' target/test-output.log | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed' target/test-output.log | awk '{s += $1} END {print s + 0}')
printf '\ntests: %s passed, %s failed\n' "$passed" "$failed"
