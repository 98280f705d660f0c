#!/usr/bin/env bash
# Builds the release CLI and generates a sample grid from the bundled model (the fixture
# model until a trained one ships). The browser demo arrives with the wasm runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL=${MODEL:-web/public/models/emoji32.safetensors}
[ -f "$MODEL" ] || MODEL=../shared/fixtures/var-tiny-a
OUT=${OUT:-target/demo}
cargo build --locked --release -p nextscale-cli
for class in 0 1 2 3; do
  target/release/nextscale sample --model "$MODEL" --class "$class" --seed 0 --count 4 --out "$OUT" --previews
done
echo "demo images in $OUT (the browser demo is not built yet)"
