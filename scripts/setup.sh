#!/usr/bin/env bash
# Installs, idempotently, what the build and test scripts need on a fresh machine: the Rust
# components and the wasm32 target, the pinned nightly toolchain with rust-src (the threaded
# wasm build, scripts/nightly.sh), Mesa's Vulkan driver (native wgpu tests), Debian's
# chromium and chromedriver (browser tests), wasm-bindgen-cli at the version Cargo.lock
# pins, cargo-fuzz (the fuzz targets), wasm-pack, and the npm workspace (pkg/, web/, the browser tests). Safe to run again;
# it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_rustup_component() {
  if ! rustup component list --installed 2>/dev/null | grep -q "^$1"; then
    log "rustup component add $1"
    rustup component add "$1"
  fi
}

need_rustup_component rustfmt
need_rustup_component clippy

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# The threaded wasm build rebuilds std with atomics: the pinned nightly and its rust-src.
scripts/nightly.sh >/dev/null

apt_packages=()
# Native wgpu tests run on Mesa's lavapipe Vulkan driver.
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || apt_packages+=(mesa-vulkan-drivers libvulkan1)
# Browser tests: Debian's chromium (SwiftShader WebGPU with --enable-unsafe-webgpu).
[ -x /usr/bin/chromium ] || apt_packages+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
command -v node >/dev/null && command -v npm >/dev/null || apt_packages+=(nodejs npm)
if [ ${#apt_packages[@]} -gt 0 ]; then
  log "apt-get install ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly. (Not --locked:
# its own lock file pins a webpki-roots release that crates.io no longer serves.)
wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg_version" ]; then
  log "cargo install wasm-bindgen-cli $wbg_version"
  cargo install wasm-bindgen-cli --version "$wbg_version" --force
fi
# The fuzz targets (scripts/fuzz.sh, and its smoke run in scripts/test.sh).
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi
if ! command -v wasm-pack >/dev/null; then
  log "cargo install wasm-pack"
  cargo install wasm-pack --locked
fi

# The npm workspace; `npm ci` only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

log "ready"
