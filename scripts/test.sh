#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Rust unit/integration/parity tests (the core's
# layering check, the CLI's bad-input matrix and the replayed fuzz corpora among them), a
# smoke run of every fuzz target, the wasm engine's tests in node (flex CPU, the SIMD128
# kernels) and in headless Chromium (WebGPU), and the end-to-end tests of the built demo
# page in Chromium (the threaded CPU build among them); then prints one `N passed, N failed`
# line, and how long each stage took.
# Extra fixture directories: NEXTSCALE_FIXTURES=a:b.
set -euo pipefail
cd "$(dirname "$0")/.."

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

step "cargo clippy (native, -D warnings)"
cargo clippy --locked --workspace --exclude nextscale-wasm --all-targets -- -D warnings

step "cargo test (native)"
# The wgpu test runs on lavapipe; the shortest autotune keeps it quick without changing results.
mkdir -p target
CUBECL_AUTOTUNE_LEVEL=minimal cargo test --locked --workspace --exclude nextscale-wasm 2>&1 |
  tee target/test-output.log

# The engine's generate-request parser replays its fuzz corpus natively (it is wasm-bindgen
# code, but the parser itself is plain Rust).
step "cargo test: nextscale-wasm's request corpus (native)"
cargo test --locked -p nextscale-wasm --no-default-features --test request_corpus 2>&1 |
  tee -a target/test-output.log

# A short smoke run of every fuzz target (the long runs are scripts/fuzz.sh, by hand).
step "fuzz smoke: every target for 5 s (scripts/fuzz.sh 5)"
scripts/fuzz.sh 5 2>&1 | tee target/fuzz-smoke.log
printf 'fuzz smoke: %s passed; 0 failed\n' "$(grep -c 'no crash, timeout or OOM' target/fuzz-smoke.log)" |
  tee -a target/test-output.log

step "nextscale-wasm for wasm32: clippy"
cargo clippy --locked -p nextscale-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings

# One dev-profile wasm build of the test binary serves both runs; the fixture parity runs in
# wasm on flex (node) and on SwiftShader's WebGPU (Chromium, flags in webdriver.json).
step "wasm-pack test --node (flex CPU)"
wasm-pack test --node crates/nextscale-wasm --locked -- --nocapture 2>&1 | tee -a target/test-output.log

# Only the WebGPU test: the CPU tests ran in node above, and in a page their long
# synchronous runs on the main thread starve the test runner's polling (the demo page's
# tests cover the CPU engine in Chromium, on a worker).
step "wasm-pack test --headless --chrome (WebGPU)"
CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_TIMEOUT=300 \
  wasm-pack test --headless --chrome crates/nextscale-wasm --locked -- --nocapture webgpu 2>&1 |
  tee -a target/test-output.log

step "npm package (dev wasm builds: single-threaded, and threaded on the pinned nightly) and demo page"
scripts/models.sh "${CARGO_TARGET_DIR:-target}/debug/nextscale"
npm run build:dev -w pkg
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
