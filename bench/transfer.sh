#!/usr/bin/env bash
# The SAMix-P transfer experiment of docs/RESULTS.md on the CPU: pre-train the Mixer by online
# SAMix on CIFAR-100 classes 0-49, then train fresh classifiers on classes 50-99 with vanilla,
# MixUp, CutMix and SAMix-P (same schedule, seeds 0 and 1), and print one table.
# Usage: bash bench/transfer.sh   (from the repository root; data from $SAMIX_DATA)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/samix
"$bin" train --config configs/transfer/pretrain_samix_c00_49.toml --out runs/transfer_pretrain --force --device cpu
"$bin" mix --policy samix_p --checkpoint runs/transfer_pretrain --data "${SAMIX_DATA:-../shared/datasets}/cifar-100-binary.tar.gz" \
  --out runs/transfer_pretrain/samix_p_grid_c50_99.png --n 16 --seed 1 --alpha 2 --classes 50,100
for seed in 0 1; do
  for m in vanilla mixup cutmix samix_p; do
    "$bin" train --config "configs/transfer/c50_99_$m.toml" --out "runs/transfer_${m}_s$seed" --force --device cpu --set seed=$seed
  done
done
python3 - <<'PY'
import json
print("| method | seed | final top-1 | median of last 2 | best | img/s | wall s |")
print("|---|---|---|---|---|---|---|")
for m in ["vanilla", "mixup", "cutmix", "samix_p"]:
    for seed in [0, 1]:
        s = json.load(open(f"runs/transfer_{m}_s{seed}/summary.json"))
        print(f"| {m} | {seed} | {s['final_acc1']:.2f} | {s['median_acc1']:.2f} | {s['best_acc1']:.2f} | {s['mean_images_per_sec']:.0f} | {s['total_time_s']:.0f} |")
PY
