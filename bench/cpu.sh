#!/usr/bin/env bash
# CPU throughput and peak memory of the ResNet-18 CIFAR training step (batch 100), samix beside
# the PyTorch reference (each in the default and the channels-last layout), one after the other
# on the same machine, then the loader alone. Print a table with: python3 bench/table.py LOG
# samix runs one process per method so each peak-RSS figure is that method's own.
# Usage: bench/cpu.sh [steps] [warmup]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-5}"; warmup="${2:-2}"
source scripts/env.sh
cargo build --release --quiet
bin=./target/release/samix
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for cl in "" "--channels-last"; do
  for m in vanilla mixup cutmix samix; do
    "$bin" bench --device cpu --steps "$steps" --warmup "$warmup" --batch 100 --methods "$m" $cl
  done
done
for m in vanilla samix; do
  "$bin" bench --device cpu --steps "$steps" --warmup "$warmup" --batch 100 --methods "$m" --precision bf16 --channels-last
done
for cl in "" "--channels-last"; do
  python3 bench/ref_with_memory.py bench/torch_samix_ref.py --device cpu --steps "$steps" --warmup "$warmup" --bs 100 $cl
done
data="${SAMIX_DATA:-../shared/datasets}/cifar-100-binary.tar.gz"
"$bin" bench --device cpu --loader configs/cifar100_r18_samix.toml --data "$data" --steps 400
