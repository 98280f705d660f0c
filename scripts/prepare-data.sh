#!/usr/bin/env bash
# Builds the emoji training set (DESIGN §6): fetches emoji-datasource-google@16.0.0 from npm
# with `npm pack`, unpacks it under data/cache and runs `nextscale data`. Idempotent: an
# unpacked package is reused. Pass --twitter to add emoji-datasource-twitter@16.0.0 too.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=16.0.0
CACHE=data/cache
mkdir -p "$CACHE"

fetch() { # name → unpacked package dir on stdout
  local name="$1" dir="$CACHE/$1-$VERSION"
  if [ ! -f "$dir/emoji.json" ]; then
    echo "[data] npm pack $name@$VERSION" >&2
    local tgz
    tgz=$(cd "$CACHE" && npm pack --silent "$name@$VERSION" | tail -n1)
    [ -f "$CACHE/$tgz" ] || { echo "[data] npm pack $name@$VERSION failed" >&2; exit 1; }
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    tar xzf "$CACHE/$tgz" -C "$dir.tmp" --strip-components=1
    rm -rf "$dir" && mv "$dir.tmp" "$dir" && rm -f "$CACHE/$tgz"
  fi
  echo "$dir"
}

args=(--google "$(fetch emoji-datasource-google)" --out data/emoji32.safetensors)
if [ "${1:-}" = "--twitter" ]; then
  args+=(--twitter "$(fetch emoji-datasource-twitter)")
fi
cargo build --release --locked -p nextscale-cli
target/release/nextscale data "${args[@]}"
