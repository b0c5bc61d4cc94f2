#!/usr/bin/env bash
# Issue 25's 224-pixel runs on the CPU (docs/RESULTS.md): online SAMix on a full-width ResNet-18
# (ImageNet stem) at 224 pixels, on CIFAR-100 classes 0-9 upscaled (500 training images, 500 test
# images), with the fine-grained recipe of configs/cub200_r18_samix.toml (its SGD lr raised to
# 0.01 for a 4-epoch run, batch 25, mask grids every epoch), twice: initialised through
# `model.init_from` from a torchvision checkpoint converted by `samix convert`, and from scratch.
# The checkpoint is a torchvision ResNet-18 that bench/pretrain_torchvision_r18.py trains on
# classes 50-99 (no ImageNet weights can be downloaded here). Then a third, short-schedule run
# (below) in which the Mixer can learn. Seed 0.
# Usage: bash bench/finetune_224.sh OUT_DIR   (from the repository root; data from $SAMIX_DATA)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "$1")
data="${SAMIX_DATA:-../shared/datasets}"
bin=target/release/samix
mkdir -p "$out"
if [[ ! -f "$out/r18_c50_99_samix.safetensors" ]]; then
  python3 bench/pretrain_torchvision_r18.py "$data/cifar-100-binary.tar.gz" "$out/r18_c50_99.safetensors"
  "$bin" convert --from torchvision --to samix --arch resnet18 "$out/r18_c50_99.safetensors" \
    "$out/r18_c50_99_samix.safetensors"
fi
# The CUB config without its dataset path and checkpoint, as the base of both runs.
sed -e '/^path = /d' -e '/^init_from = /d' configs/cub200_r18_samix.toml >"$out/base.toml"
common=(--config "$out/base.toml" --device cpu --force
  --set data.dataset=cifar100 --set "data.classes=[0, 10]"
  --set data.train_limit=500 --set data.test_limit=500 --set data.workers=1
  --set train.epochs=4 --set train.batch_size=25 --set train.median_of_last=1
  --set optim.lr=0.01 --set mix.visual_every=1)
export SAMIX_DATA="$data"
"$bin" train "${common[@]}" --set "model.init_from=\"$out/r18_c50_99_samix.safetensors\"" --out "$out/init_from"
"$bin" train "${common[@]}" --out "$out/scratch"
# The Mixer on a schedule it can learn in: 200 steps of a narrow ResNet-18 (base width 16) from
# scratch, the EMA critic fast enough to follow (0.99 -> 0.999), the Mixer at lr 0.1 -> 0.01.
"$bin" train "${common[@]}" --set train.epochs=10 --set model.base_width=16 \
  --set mix.ema.momentum=0.99 --set mix.ema.end_momentum=0.999 \
  --set mix.mixer_optim.lr=0.1 --set mix.mixer_optim.min_lr=0.01 --out "$out/narrow_fast_ema"
