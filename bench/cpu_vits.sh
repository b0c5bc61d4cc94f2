#!/usr/bin/env bash
# The DeiT-S and ConvNeXt-T ImageNet training steps (224×224, 1,000 classes, fixed random batch) on
# the CPU, samix beside the PyTorch reference on timm's own models, alternating: vanilla, and online
# SAMix (DeiT-S: the Mixer on block 6, ×16 nearest; ConvNeXt-T: on stage 3, ×16 bilinear), f32; with
# a fourth argument `bf16` also bf16 autocast (emulated, and so ~16× slower, on CPUs without AVX-512
# BF16 or AMX). Print a table with: python3 bench/table.py LOG
# Usage: bench/cpu_vits.sh [steps] [warmup] [batch] [bf16]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-3}"; warmup="${2:-1}"; batch="${3:-8}"; bf16="${4:-}"
source scripts/env.sh
cargo build --release --quiet
bin=./target/release/samix
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for model in deit-s convnext-t; do
  for m in vanilla samix; do
    "$bin" bench --device cpu --model "$model" --steps "$steps" --warmup "$warmup" --batch "$batch" --methods "$m"
    python3 bench/ref_with_memory.py bench/torch_samix_ref.py --device cpu --model "$model" --methods "$m" \
      --steps "$steps" --warmup "$warmup" --bs "$batch"
    if [ "$bf16" = bf16 ]; then
      "$bin" bench --device cpu --model "$model" --steps "$steps" --warmup "$warmup" --batch "$batch" --methods "$m" \
        --precision bf16
      python3 bench/ref_with_memory.py bench/torch_samix_ref.py --device cpu --model "$model" --methods "$m" \
        --steps "$steps" --warmup "$warmup" --bs "$batch" --amp
    fi
  done
done
