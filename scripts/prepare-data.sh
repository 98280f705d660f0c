#!/usr/bin/env bash
# Builds the emoji training set (DESIGN §6): fetches emoji-datasource-google@16.0.0 from npm
# with `npm pack`, unpacks it under data/cache and runs `nextscale data`. Idempotent: an
# unpacked package is reused. Pass --twitter to write data/emoji32-twitter.safetensors
# instead: the same emoji in Google's and Twemoji's styles (emoji-datasource-twitter@16.0.0),
# held out in both (the evaluator's classifier trains on it).
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

args=(--google "$(fetch emoji-datasource-google)")
if [ "${1:-}" = "--twitter" ]; then
  args+=(--twitter "$(fetch emoji-datasource-twitter)" --out data/emoji32-twitter.safetensors)
else
  args+=(--out data/emoji32.safetensors)
fi
cargo build --release --locked -p nextscale-cli
target/release/nextscale data "${args[@]}"
