"""torchvision's side of the loader benchmark (bench/loader.sh): ImageFolder + DataLoader over PIL
with the transforms samix's training pipeline applies (random-resized crop to 224, flip, to tensor,
normalise with ImageNet's statistics), batches of 100, shuffled; `--randaug` adds timm's
`rand-m9-mstd0.5-inc1` RandAugment after the flip (as timm's create_transform does). One warm-up
epoch, then EPOCHS timed ones. Prints `torchvision workers images seconds images/s`.

    python3 bench/torchvision_loader.py ROOT WORKERS [EPOCHS] [--randaug]
"""
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root, workers = args[0], int(args[1])
    epochs = int(args[2]) if len(args) > 2 else 2
    randaug = "--randaug" in sys.argv
    steps = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
    if randaug:
        from PIL import Image, ImageOps
        from timm.data.auto_augment import rand_augment_transform

        # Pillow 13 refuses posterize(img, 0), which timm asks for when a magnitude clips to 10
        # (2.3% of its posterize draws): the DataLoader dies within the first epoch. Give the
        # black image earlier Pillows (and samix) give.
        posterize = ImageOps.posterize
        ImageOps.posterize = lambda img, bits: posterize(img, bits) if bits > 0 else Image.new(img.mode, img.size)

        hparams = dict(translate_const=100, img_mean=(124, 116, 104), interpolation=Image.BICUBIC)
        steps.append(rand_augment_transform("rand-m9-mstd0.5-inc1", hparams))
    steps += [transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    data = datasets.ImageFolder(f"{root}/train", transforms.Compose(steps))
    torch.manual_seed(0)
    loader = DataLoader(data, batch_size=100, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up: page cache, worker start
        pass
    images, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            images += x.shape[0]
    secs = time.perf_counter() - start
    name = "torchvision+randaug" if randaug else "torchvision"
    print(f"{name} {workers} {images} {secs:.2f} {images / secs:.1f}")


if __name__ == "__main__":
    main()
