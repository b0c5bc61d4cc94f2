#!/usr/bin/env bash
# CPU throughput of the ResNet-18 CIFAR training step (batch 100), samix beside the PyTorch
# reference, one after the other on the same machine. Usage: bench/cpu.sh [steps] [warmup]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-5}"; warmup="${2:-2}"
source scripts/env.sh
cargo build --release --quiet
echo "# $(date -u +%FT%TZ) $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
./target/release/samix bench --device cpu --steps "$steps" --warmup "$warmup" --batch 100
python3 ../shared/bench/torch_samix_ref.py --device cpu --steps "$steps" --warmup "$warmup" --bs 100
