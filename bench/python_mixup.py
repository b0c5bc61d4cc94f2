"""samix called from PyTorch beside timm's Mixup, in one process on the same batches.

1. Per call: samix.MixUp / samix.CutMix against timm.data.Mixup in MixUp-only and CutMix-only
   form (α 1), on a CIFAR-sized batch (128×3×32×32, 100 classes) and a tiny one (2×3×8×8, which
   leaves the per-call overhead), median of --calls calls after warm-up. Each side does what it
   does for a training step: samix returns images, y_a, y_b and λ; timm mixes in place and
   returns the dense target matrix (label smoothing 0 on both sides).
2. A training step of torchvision's ResNet-18 (CIFAR stem) at batch --batch: SAMix-P (a samix
   run's frozen Mixer; --mixer, a run folder with mixer.json for 3×32×32 images) against timm's
   Mixup (MixUp α 1) and against no mixing, forward + backward + SGD, median of --steps steps after
   one warm-up, the three alternating step by step.

    python bench/python_mixup.py --mixer runs/bench_samix_p --calls 200 --steps 10 --batch 64
Prints a Markdown table.
"""

import argparse
import statistics
import time

import timm.data
import timm.loss
import torch
import torchvision

import samix


def median_ms(fn, calls, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def per_call(calls):
    rows = []
    for shape in ((128, 3, 32, 32), (2, 3, 8, 8)):
        x, y = torch.randn(shape), torch.randint(0, 100, (shape[0],))
        sides = {
            "MixUp": (samix.MixUp(alpha=1.0, seed=0), timm.data.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=100)),
            "CutMix": (samix.CutMix(alpha=1.0, seed=0), timm.data.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=100)),
        }
        for name, (ours, theirs) in sides.items():
            a = median_ms(lambda: ours(x, y), calls)
            # timm mixes in place: give it a fresh copy each call, and time the copy alone too.
            b = median_ms(lambda: theirs(x.clone(), y), calls)
            copy = median_ms(lambda: x.clone(), calls)
            rows.append((name, "×".join(map(str, shape)), a, b - copy))
    return rows


class Resnet18Cifar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=100)
        self.net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.net.maxpool = torch.nn.Identity()

    def forward(self, x):
        return self.net(x)


def loop_steps(mixer_dir, steps, batch):
    torch.manual_seed(0)
    model = Resnet18Cifar()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pm = samix.PretrainedMixer.load(mixer_dir, seed=0)
    tm = timm.data.Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=100)
    soft_ce = timm.loss.SoftTargetCrossEntropy()
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 100, (batch,))

    def step_with(loss_of):
        def step():
            loss = loss_of()
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    def samix_p():
        x_mix, y_a, y_b, lam = pm(x, y)
        return samix.mixup_cross_entropy(model(x_mix), y_a, y_b, lam)

    def timm_mixup():
        x_mix, target = tm(x.clone(), y)
        return soft_ce(model(x_mix), target)

    def plain():
        return torch.nn.functional.cross_entropy(model(x), y)

    named = {"no mixing": step_with(plain), "timm Mixup (MixUp α 1)": step_with(timm_mixup), "samix SAMix-P": step_with(samix_p)}
    times = {k: [] for k in named}
    for fn in named.values():
        fn()
    for _ in range(steps):
        for name, fn in named.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixer", required=True, help="a samix run folder with mixer.json (3×32×32 images)")
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    print(f"torch {torch.__version__}, timm {timm.__version__}, samix {samix.__version__}, {torch.get_num_threads()} threads\n")
    print("| policy | batch | samix ms/call | timm Mixup ms/call (its input copy subtracted) |")
    print("|---|---|---|---|")
    for name, shape, ours, theirs in per_call(a.calls):
        print(f"| {name} | {shape} | {ours:.3f} | {theirs:.3f} |")
    print(f"\n| ResNet-18 (CIFAR stem) step, batch {a.batch} | ms/step (median of {a.steps}) |")
    print("|---|---|")
    for name, ms in loop_steps(a.mixer, a.steps, a.batch).items():
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
