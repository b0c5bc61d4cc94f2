"""PyTorch peer of `samix bench --methods moco`: one MoCo v2 training step of the same shapes
(ResNet-18 CIFAR variant from bench/torch_samix_ref.py without its classifier, MoCo v2
neck 512 -> 2048 -> 128, two views of a fixed random 32x32 batch, key momentum 0.99 over
parameters, keys in 4 shuffled sub-batches (shuffle-BN within one process), InfoNCE with
tau = 0.2 against a 65,536-key queue, SGD 0.03 / 0.9 / 1e-4, enqueue), written from
docs/ALGORITHM.md section 6 and MoCo v2. PyTorch eager.
Usage: python3 bench/torch_moco_ref.py [--steps 5] [--warmup 2] [--bs 100] [--device cpu]
       [--channels-last]
Prints: RESULT torch moco ... ms/step img/s peak_rss=...MiB (peak RSS on the CPU)."""
import argparse
import copy
import importlib.util
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REFERENCE = Path(__file__).resolve().parent / "torch_samix_ref.py"


def load_reference_resnet():
    spec = importlib.util.spec_from_file_location("torch_samix_ref", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResNet18C


class Encoder(nn.Module):
    """The reference's ResNet-18 (CIFAR stem) up to its last stage, globally pooled."""

    def __init__(self, resnet):
        super().__init__()
        self.stem, self.stages = resnet.stem, resnet.stages

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def neck():
    return nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 128))


def peak_rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bs", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--queue", type=int, default=65536)
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    resnet_class = load_reference_resnet()
    query = nn.Sequential(Encoder(resnet_class(100)), neck()).to(dev)
    key = copy.deepcopy(query)
    for p in key.parameters():
        p.requires_grad_(False)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    query, key = query.to(memory_format=memory_format), key.to(memory_format=memory_format)
    queue = F.normalize(torch.randn(128, a.queue, device=dev), dim=0)
    opt = torch.optim.SGD(query.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    x1 = torch.randn(a.bs, 3, 32, 32, device=dev).contiguous(memory_format=memory_format)
    x2 = torch.randn(a.bs, 3, 32, 32, device=dev).contiguous(memory_format=memory_format)
    state = {"ptr": 0}

    def step():
        with torch.no_grad():
            for pk, pq in zip(key.parameters(), query.parameters()):
                pk.mul_(0.99).add_(pq, alpha=0.01)
        q = F.normalize(query(x1), dim=1)
        with torch.no_grad():
            order = torch.randperm(a.bs, device=dev)
            keys = torch.cat([F.normalize(key(chunk), dim=1) for chunk in x2[order].chunk(4)])
            keys = keys[torch.argsort(order)]
        positives = (q * keys).sum(1, keepdim=True)
        negatives = q @ queue
        logits = torch.cat([positives, negatives], 1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(a.bs, dtype=torch.long, device=dev))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        with torch.no_grad():
            ptr = state["ptr"]
            queue[:, ptr:ptr + a.bs] = keys.T
            state["ptr"] = (ptr + a.bs) % a.queue

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1000 / a.steps
    memory = f" peak_rss={peak_rss_mib():.0f}MiB" if dev.type == "cpu" else ""
    print(f"RESULT torch moco amp=False cl={a.channels_last} bs={a.bs}: {ms:.2f} ms/step "
          f"{a.bs * 1000 / ms:.0f} img/s{memory}", flush=True)


if __name__ == "__main__":
    main()
