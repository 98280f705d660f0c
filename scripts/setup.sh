#!/usr/bin/env bash
# Installs, idempotently, what the build and test scripts need on a fresh machine:
# the Rust components and the wasm32 target. Safe to run again; it skips what is there.
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

# Native wgpu tests run on Mesa's lavapipe Vulkan driver.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
  log "apt-get install mesa-vulkan-drivers libvulkan1"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

log "ready"
