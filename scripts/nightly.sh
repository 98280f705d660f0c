#!/usr/bin/env bash
# Prints the pinned nightly toolchain that builds the threaded wasm engine (`-Z build-std`
# with `+atomics`), installing it or its rust-src component when missing. The pin is the
# date below: a machine whose `nightly` is that date uses it as is.
set -euo pipefail
DATE=2026-05-19
log() { printf '[nightly] %s\n' "$*" >&2; }

if rustc +nightly --version 2>/dev/null | grep -q "$DATE"; then
  toolchain=nightly
elif rustc "+nightly-$DATE" --version >/dev/null 2>&1; then
  toolchain="nightly-$DATE"
else
  log "rustup toolchain install nightly-$DATE"
  rustup toolchain install "nightly-$DATE" --profile minimal --component rust-src >&2
  toolchain="nightly-$DATE"
fi
if ! rustup component list --toolchain "$toolchain" --installed 2>/dev/null | grep -q '^rust-src'; then
  log "rustup component add rust-src --toolchain $toolchain"
  rustup component add rust-src --toolchain "$toolchain" >&2
fi
echo "$toolchain"
