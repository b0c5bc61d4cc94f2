#!/usr/bin/env bash
# Runs on the device machine (torch 2.11.0+cu130 in its python3, no Rust) in ONE call: the
# GPU-only tests, samix's step in f32/bf16 × default/channels-last layout × eager/CUDA graph, then
# the PyTorch reference (f32, channels-last, bf16 autocast) with peak memory, and prints one
# table. Prepare here (carry `.device`):
#   bash bench/prepare_gpu.sh
# Then, in one device call:  bash bench/gpu.sh [steps] [warmup]
# Every command is guarded, so a failing variant (say, graph capture) leaves the others' figures.
# SAMIX_BENCH_DEVICE=cpu bash bench/gpu.sh 1 0 rehearses the script's flow on a machine without
# a GPU (the graph variants then fail, guarded).
set -uo pipefail
cd "$(dirname "$0")/.."
steps="${1:-100}"; warmup="${2:-20}"; device="${SAMIX_BENCH_DEVICE:-cuda}"
torch_dir="$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out="${OUT:-/tmp}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee "$out/card.txt"
echo "## GPU-only tests"
timeout 180 ./.device/native-tests --test-threads 1 --include-ignored cuda_ 2>&1 | tail -n 15 || echo "FAILED: GPU tests"
: > "$out/results.txt"
# Variants: precision, layout, CUDA graph.
for variant in "f32" "f32 --channels-last" "bf16 --channels-last" "f32 --cuda-graph" "f32 --channels-last --cuda-graph" "bf16 --channels-last --cuda-graph"; do
  set -- $variant
  precision="$1"; shift
  timeout 240 ./.device/samix bench --device "$device" --steps "$steps" --warmup "$warmup" --batch 100 \
    --precision "$precision" "$@" 2>&1 | tee -a "$out/results.txt" || echo "FAILED: samix $variant"
done
for flags in "" "--channels-last" "--amp --channels-last"; do
  timeout 240 python3 bench/ref_with_memory.py .device/torch_samix_ref.py --device "$device" --steps "$steps" --warmup "$warmup" --bs 100 \
    $flags 2>&1 | tee -a "$out/results.txt" || echo "FAILED: torch $flags"
done
python3 bench/table.py "$out/results.txt" | tee "$out/table.md"
