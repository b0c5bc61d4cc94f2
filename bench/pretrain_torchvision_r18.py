"""A torchvision ResNet-18 (ImageNet stem) pre-trained by plain PyTorch on CIFAR-100 classes 50-99,
saved as safetensors: the stand-in for an ImageNet checkpoint in the 224-pixel fine-tuning
experiment (bench/finetune_224.sh, docs/RESULTS.md), on a machine that cannot download
torchvision's weights. The images are upscaled to --size (bilinear) after a padded random crop
and a flip; SGD 0.05 / 0.9 / 5e-4, cosine per step; batch 100; seed 0.

    python bench/pretrain_torchvision_r18.py CIFAR100_ARCHIVE OUT.safetensors [--epochs 2] [--size 64]

Prints the loss every 50 steps and the held-out top-1 on classes 50-99's test images at the end.
"""

import argparse
import tarfile

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision


def read_split(archive, member, lo, hi):
    with tarfile.open(archive) as tar:
        raw = np.frombuffer(tar.extractfile(f"cifar-100-binary/{member}").read(), dtype=np.uint8)
    rows = raw.reshape(-1, 2 + 3 * 32 * 32)
    fine = rows[:, 1].astype(np.int64)
    keep = (fine >= lo) & (fine < hi)
    images = torch.from_numpy(rows[keep, 2:].reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(fine[keep] - lo)


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def prepare(images, size, train, gen):
    x = images.float() / 255.0
    if train:
        x = F.pad(x, (4, 4, 4, 4), mode="reflect")
        top, left = torch.randint(0, 9, (2,), generator=gen).tolist()
        x = x[:, :, top : top + 32, left : left + 32]
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - MEAN) / STD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("archive")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train_x, train_y = read_split(args.archive, "train.bin", 50, 100)
    test_x, test_y = read_split(args.archive, "test.bin", 50, 100)
    model = torchvision.models.resnet18(num_classes=50)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    batch = 100
    steps = args.epochs * (len(train_x) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_x), generator=gen)
        model.train()
        for i in range(len(train_x) // batch):
            idx = order[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(prepare(train_x[idx], args.size, True, gen)), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f}", flush=True)
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_x), 500):
            logits = model(prepare(test_x[i : i + 500], args.size, False, gen))
            correct += (logits.argmax(1) == test_y[i : i + 500]).sum().item()
    print(f"top-1 on classes 50-99 (test, {len(test_x)} images): {100.0 * correct / len(test_x):.2f}")
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)


if __name__ == "__main__":
    main()
