#!/usr/bin/env bash
# Runs on the device machine (torch 2.11.0+cu130 in its python3, no Rust) in ONE call: the
# GPU-only tests, samix's step in f32/bf16 × eager/CUDA graph, then the PyTorch reference (f32 and
# bf16 autocast) with peak memory, and prints one table. Prepare here (carry `.device`):
#   bash bench/prepare_gpu.sh
# Then, in one device call:  bash bench/gpu.sh [steps] [warmup]
# Every command is guarded, so a failing variant (say, graph capture) leaves the others' figures.
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-100}"; warmup="${2:-20}"
torch_dir="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
echo "## GPU-only tests"
timeout 180 ./.device/native-tests --test-threads 1 cuda_ 2>&1 | tail -n 15 || echo "FAILED: GPU tests"
: > "$out/results.txt"
for precision in f32 bf16; do
  for graph in "" "--cuda-graph"; do
    timeout 240 ./.device/samix bench --device cuda --steps "$steps" --warmup "$warmup" --batch 100 \
      --precision "$precision" $graph 2>&1 | tee -a "$out/results.txt" || echo "FAILED: samix $precision $graph"
  done
done
timeout 240 python3 bench/ref_with_memory.py .device/torch_samix_ref.py --device cuda --steps "$steps" --warmup "$warmup" --bs 100 \
  2>&1 | tee -a "$out/results.txt" || echo "FAILED: torch f32"
timeout 240 python3 bench/ref_with_memory.py .device/torch_samix_ref.py --device cuda --steps "$steps" --warmup "$warmup" --bs 100 --amp \
  2>&1 | tee -a "$out/results.txt" || echo "FAILED: torch amp"
python3 bench/table.py "$out/results.txt" | tee "$out/table.md"
