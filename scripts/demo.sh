#!/usr/bin/env bash
# Builds a release of the browser demo (the wasm engine, the npm package, the page) with the
# bundled model, then serves it on 127.0.0.1:${PORT:-8080}. The bundled model is the trained
# web/public/models/emoji32.safetensors when present, else one made from the reference
# fixture (scripts/models.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PORT=${PORT:-8080}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --locked --release -p nextscale-cli
scripts/models.sh "$TARGET/release/nextscale"
npm run build -w pkg
npm run build -w web
echo "nextscale demo: http://127.0.0.1:$PORT/"
exec node scripts/serve.mjs web/dist "$PORT"
