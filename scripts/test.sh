#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Rust unit/integration/parity tests and the
# wasm32 build of the bindings crate, then prints one `N passed, N failed` line.
# Extra fixture directories: NEXTSCALE_FIXTURES=a:b.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, -D warnings)"
cargo clippy --locked --workspace --exclude nextscale-wasm --all-targets -- -D warnings

step "cargo test (native)"
# The wgpu test runs on lavapipe; the shortest autotune keeps it quick without changing results.
mkdir -p target
CUBECL_AUTOTUNE_LEVEL=minimal cargo test --locked --workspace --exclude nextscale-wasm 2>&1 |
  tee target/test-output.log

step "nextscale-wasm for wasm32: clippy and build"
cargo clippy --locked -p nextscale-wasm --target wasm32-unknown-unknown -- -D warnings
cargo build --locked -p nextscale-wasm --target wasm32-unknown-unknown

passed=$(grep -oE '[0-9]+ passed' target/test-output.log | awk '{s += $1} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed' target/test-output.log | awk '{s += $1} END {print s + 0}')
printf '\ntests: %s passed, %s failed\n' "$passed" "$failed"
