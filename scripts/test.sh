#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Rust unit/integration/parity tests and the
# wasm32 build of the bindings crate. Extra fixture directories: NEXTSCALE_FIXTURES=a:b.
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
CUBECL_AUTOTUNE_LEVEL=minimal cargo test --locked --workspace --exclude nextscale-wasm

step "cargo build nextscale-wasm (wasm32)"
cargo clippy --locked -p nextscale-wasm --target wasm32-unknown-unknown -- -D warnings
