#!/usr/bin/env bash
# The ResNet-50 ImageNet training step (224×224, 1,000 classes, fixed random batch) on the CPU,
# samix beside the PyTorch reference, alternating, in f32 and in bf16 autocast + channels-last:
# vanilla, and online SAMix (Mixer on stage 3, ×16). Print a table with: python3 bench/table.py LOG
# Usage: bench/cpu_r50.sh [steps] [warmup] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-3}"; warmup="${2:-1}"; batch="${3:-16}"
source scripts/env.sh
cargo build --release --quiet
bin=./target/release/samix
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for m in vanilla samix; do
  "$bin" bench --device cpu --model imagenet-r50 --steps "$steps" --warmup "$warmup" --batch "$batch" --methods "$m"
  python3 bench/ref_with_memory.py bench/torch_samix_ref.py --device cpu --model imagenet-r50 --methods "$m" \
    --steps "$steps" --warmup "$warmup" --bs "$batch"
  "$bin" bench --device cpu --model imagenet-r50 --steps "$steps" --warmup "$warmup" --batch "$batch" --methods "$m" \
    --precision bf16 --channels-last
  python3 bench/ref_with_memory.py bench/torch_samix_ref.py --device cpu --model imagenet-r50 --methods "$m" \
    --steps "$steps" --warmup "$warmup" --bs "$batch" --amp --channels-last
done
