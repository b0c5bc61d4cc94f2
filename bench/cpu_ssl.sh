#!/usr/bin/env bash
# CPU time of one self-supervised step (ResNet-18 CIFAR, two views of a batch of 128 32×32
# images, 65,536-key queue): samix's MoCo v2 step beside the PyTorch peer bench/torch_moco_ref.py,
# alternating over `rounds` rounds on the same machine, in the default and channels-last layouts;
# then samix's SAMix-SSL step (no PyTorch peer: the reference has no SAMix-SSL config).
# Usage: bench/cpu_ssl.sh [steps] [warmup] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-5}"; warmup="${2:-2}"; rounds="${3:-3}"
source scripts/env.sh
cargo build --release --quiet
bin=./target/release/samix
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for round in $(seq "$rounds"); do
  for cl in "" "--channels-last"; do
    "$bin" bench --device cpu --steps "$steps" --warmup "$warmup" --batch 128 --methods moco $cl | grep RESULT
    python3 bench/torch_moco_ref.py --device cpu --steps "$steps" --warmup "$warmup" --bs 128 $cl
  done
done
"$bin" bench --device cpu --steps "$steps" --warmup "$warmup" --batch 128 --methods moco_samix | grep RESULT
