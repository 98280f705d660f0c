#!/usr/bin/env bash
# Puts the demo's models in web/public/models/ and writes its manifest.json:
# - var-tiny-a.safetensors and hmar-tiny-a.safetensors, made from the reference fixtures
#   ../shared/fixtures/{var,hmar}-tiny-a (random weights: test models, not trained ones)
#   with `nextscale convert`;
# - every other *.safetensors already there (the trained emoji32.safetensors, once it ships).
# The default is emoji32.safetensors when present, else the fixture model. Each entry
# carries the file's SHA-256 (the page puts it in the model URL, so a changed file is never
# served from a visitor's Cache API copy of the old one) and its family, var or hmar.
# Usage: scripts/models.sh [path/to/nextscale]   (default: target/release/nextscale)
set -euo pipefail
cd "$(dirname "$0")/.."
NEXTSCALE=${1:-${CARGO_TARGET_DIR:-target}/release/nextscale}
DIR=web/public/models
FIXTURES=../shared/fixtures
mkdir -p "$DIR"

names=$(mktemp)
trap 'rm -f "$names"' EXIT
for i in 0 1 2 3 4 5 6 7 8 9; do echo "class $i"; done >"$names"
for fixture in var-tiny-a hmar-tiny-a; do
  weights=$FIXTURES/$fixture/weights.safetensors
  if [ ! -f "$DIR/$fixture.safetensors" ] || [ "$weights" -nt "$DIR/$fixture.safetensors" ]; then
    "$NEXTSCALE" convert --vae "$weights" --patch-nums 1,2,3,4 \
      --class-names "$names" --dtype f16 --out "$DIR/$fixture.safetensors" \
      --attribution "random weights of the $fixture reference fixture (a test model, not trained)"
  fi
done

default=var-tiny-a.safetensors
[ -f "$DIR/emoji32.safetensors" ] && default=emoji32.safetensors
node - "$DIR" "$default" <<'JS'
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const [dir, def] = process.argv.slice(2);
/** The family in a model file's config (safetensors header metadata). */
const family = (bytes) => {
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
  return JSON.parse(header.__metadata__['nextscale.config']).hmar ? 'hmar' : 'var';
};
const models = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((file) => {
  const bytes = fs.readFileSync(path.join(dir, file));
  return {
    file,
    name: path.basename(file, '.safetensors'),
    bytes: bytes.length,
    sha256: crypto.createHash('sha256').update(bytes).digest('hex'),
    family: family(bytes),
  };
});
fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ default: def, models }, null, 2) + '\n');
console.error(`[models] ${models.map((m) => m.file).join(', ')} (default ${def})`);
JS
