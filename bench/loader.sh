#!/usr/bin/env bash
# Issue 25's loader benchmark, side by side in one run: samix's training input pipeline
# (examples/loader_speed.rs) and torchvision's ImageFolder + DataLoader (bench/torchvision_loader.py)
# over the same folder of JPEGs, random-resized crop to 224 + flip + normalise, batches of 100, at
# 1 and 2 workers, interleaved so both see the same machine state, then both with timm's
# RandAugment (rand-m9-mstd0.5-inc1) added. Prints one table row per run.
# Usage: bash bench/loader.sh ROOT [EPOCHS]   (ROOT holds train/<class>/*.JPEG and val/)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$1
epochs=${2:-2}
source scripts/env.sh
cargo build --release --example loader_speed -q
bin=target/release/examples/loader_speed
echo "| loader | workers | images | seconds | images/s |"
echo "|---|---|---|---|---|"
for workers in 1 2; do
  for run in "python3 bench/torchvision_loader.py $root $workers $epochs" \
             "$bin $root $workers full $epochs" \
             "$bin $root $workers partial $epochs" \
             "$bin $root $workers scaled $epochs"; do
    $run | awk '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}'
  done
done
for workers in 1 2; do
  for run in "python3 bench/torchvision_loader.py $root $workers $epochs --randaug" \
             "$bin $root $workers scaled $epochs --randaug"; do
    $run | awk '{printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5}'
  done
done
