#!/usr/bin/env bash
# The whole native training pipeline on CPU (flex autodiff), as used for the bundled model:
# data → VQ-VAE tokenizer → VAR teacher (conditioned on the subcategories) → evaluator
# classifier → the teacher's sampling tuned on the evaluator and stored in its file →
# Distilled-Decoding pairs (the teacher at that sampling, driven by the flow map Ψ) → DD
# student (teacher + student exported to web/public/models/emoji32.safetensors, with the
# sampling) → evaluation of every mode; then HMAR
# on the same tokenizer (next-scale stage, masked fine-tune, exported to
# web/public/models/hmar-emoji32.safetensors), its sampling tuned the same way, evaluated.
# Every stage resumes from its run directory or output file, so the script can be stopped
# and started again. Step counts can be overridden from the environment (VQVAE_STEPS, the
# length of the tokenizer's learning-rate schedule, and VQVAE_UNTIL, where it stops;
# VAR_STEPS, DD_PAIRS, CLASSIFIER_STEPS, HMAR_STEPS, HMAR_MASK_STEPS).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prepare-data.sh
bin=target/release/nextscale
time "$bin" train-vqvae --steps "${VQVAE_STEPS:-4000}" --until "${VQVAE_UNTIL:-2000}" --out runs/vqvae
time "$bin" train-var --steps "${VAR_STEPS:-3000}" --lr 8e-4 --out runs/var --subclasses \
  --vqvae runs/vqvae/checkpoint.safetensors --export runs/var/teacher.safetensors
if [ ! -f models/emoji32-classifier.safetensors ]; then
  scripts/prepare-data.sh --twitter
  time "$bin" train-classifier --data data/emoji32-twitter.safetensors \
    --steps "${CLASSIFIER_STEPS:-2000}" --batch 64
fi
time "$bin" tune-sampling --model runs/var/teacher.safetensors --cfg 2,3,4 --top-k 20,50 \
  --top-p 0.6,0.8 --write --json runs/tune-sampling.json
# The student learns the teacher as the page samples it: pairs at the tuned sampling.
time "$bin" distill-data --model runs/var/teacher.safetensors --model-sampling \
  --count "${DD_PAIRS:-20480}" --out data/distill.safetensors
# A 1,000-step schedule, then resumed on ones of 2,000 to 5,000 steps (warm restarts at
# 0.55, 0.29, 0.18 and 0.12 of the peak rate); a sixth stage no longer paid.
for steps in 1000 2000 3000 4000 5000; do
  time "$bin" distill --teacher runs/var/teacher.safetensors --data data/distill.safetensors \
    --steps "$steps" --loss-split-t 6 --out runs/dd --export web/public/models/emoji32.safetensors
done
for mode in var dd1 dd2 parallel; do
  "$bin" eval --per-class 32 --mode "$mode" --json "runs/eval-$mode.json"
done
time "$bin" train-hmar --steps "${HMAR_STEPS:-1500}" --lr 8e-4 --mask-steps "${HMAR_MASK_STEPS:-500}" \
  --out runs/hmar --vqvae runs/vqvae/checkpoint.safetensors \
  --export web/public/models/hmar-emoji32.safetensors
hmar=web/public/models/hmar-emoji32.safetensors
time "$bin" tune-sampling --model "$hmar" --cfg 2,3,4 --top-k 20,50 --top-p 0.6,0.8 --write \
  --json runs/tune-sampling-hmar.json
"$bin" eval --model "$hmar" --per-class 32 --json runs/eval-hmar.json
