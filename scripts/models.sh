#!/usr/bin/env bash
# Puts the demo's models in web/public/models/ and writes its manifest.json:
# - var-tiny-a.safetensors, made from the reference fixture ../shared/fixtures/var-tiny-a
#   (random weights: a test model, not a trained one) with `nextscale convert`;
# - every other *.safetensors already there (the trained emoji32.safetensors, once it ships).
# The default is emoji32.safetensors when present, else the fixture model. Each entry
# carries the file's SHA-256: the page puts it in the model URL, so a changed file is never
# served from a visitor's Cache API copy of the old one.
# Usage: scripts/models.sh [path/to/nextscale]   (default: target/release/nextscale)
set -euo pipefail
cd "$(dirname "$0")/.."
NEXTSCALE=${1:-${CARGO_TARGET_DIR:-target}/release/nextscale}
DIR=web/public/models
FIXTURE=../shared/fixtures/var-tiny-a
mkdir -p "$DIR"

if [ ! -f "$DIR/var-tiny-a.safetensors" ] || [ "$FIXTURE/weights.safetensors" -nt "$DIR/var-tiny-a.safetensors" ]; then
  names=$(mktemp)
  trap 'rm -f "$names"' EXIT
  for i in 0 1 2 3 4 5 6 7 8 9; do echo "class $i"; done >"$names"
  "$NEXTSCALE" convert --vae "$FIXTURE/weights.safetensors" --patch-nums 1,2,3,4 \
    --class-names "$names" --dtype f16 --out "$DIR/var-tiny-a.safetensors" \
    --attribution "random weights of the var-tiny-a reference fixture (a test model, not trained)"
fi

default=var-tiny-a.safetensors
[ -f "$DIR/emoji32.safetensors" ] && default=emoji32.safetensors
node - "$DIR" "$default" <<'JS'
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const [dir, def] = process.argv.slice(2);
const models = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((file) => ({
  file,
  name: path.basename(file, '.safetensors'),
  bytes: fs.statSync(path.join(dir, file)).size,
  sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, file))).digest('hex'),
}));
fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ default: def, models }, null, 2) + '\n');
console.error(`[models] ${models.map((m) => m.file).join(', ')} (default ${def})`);
JS
