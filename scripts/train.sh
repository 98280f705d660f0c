#!/usr/bin/env bash
# The whole native training pipeline on CPU (flex autodiff), as used for the bundled model:
# data → VQ-VAE tokenizer → VAR teacher (exported to web/public/models/emoji32.safetensors)
# → evaluator classifier → evaluation. Every stage resumes from its run directory, so the
# script can be stopped and started again. Step counts can be overridden from the
# environment (VQVAE_STEPS, VAR_STEPS, CLASSIFIER_STEPS).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prepare-data.sh
bin=target/release/nextscale
time "$bin" train-vqvae --steps "${VQVAE_STEPS:-1000}" --out runs/vqvae
time "$bin" train-var --steps "${VAR_STEPS:-1500}" --lr 8e-4 --out runs/var \
  --vqvae runs/vqvae/checkpoint.safetensors --export web/public/models/emoji32.safetensors
if [ ! -f models/emoji32-classifier.safetensors ]; then
  time "$bin" train-classifier --steps "${CLASSIFIER_STEPS:-500}" --batch 32
fi
"$bin" eval --per-class 32 --json runs/eval-var.json
