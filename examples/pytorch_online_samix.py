"""Online SAMix in a plain PyTorch training loop: torchvision's ResNet-18 (CIFAR stem), PyTorch's
SGD and data, samix's Mixer, mask loss, Mixer loss and mask post-processing. The step is SAMix's
(docs/ALGORITHM.md §3–§4): an EMA copy of the network (the critic) reads stage-3 features of the
clean batch; the Mixer turns them into two masks, one per branch. The Mixer branch's mixed images
go through the frozen critic, whose Mixer loss, with the mask loss, trains only the Mixer; the
backbone branch's mask, detached and post-processed, mixes the images the network learns from,
beside its clean-image loss. Then the critic follows the network by EMA.

    pip install .[test]     # samix with torchvision (README, "From PyTorch")
    python examples/pytorch_online_samix.py [CIFAR100_ARCHIVE] [STEPS] [IMAGES]

Trains for STEPS steps (default 60) of 32 images, cycling through the first IMAGES images of
CIFAR-100's training split (default 256) read from the binary archive (default:
$SAMIX_DATA/cifar-100-binary.tar.gz, else ../shared/datasets/...), and prints the four loss
terms. Exits non-zero if the network's clean-image loss has not fallen (on 256 images it falls
within a few passes; a real run would take the whole split and many epochs).
"""

import copy
import os
import sys
import tarfile

import torch
import torchvision

import samix

# SAMix's α and λ margin; the EMA momentum is shortened for a demo of tens of steps (SAMix's:
# 0.999 rising to 0.999999 over a run of many thousand, samix's [mix.ema] defaults).
BATCH, ALPHA, LAM_MARGIN, MOMENTUM = 32, 2.0, 0.08, 0.99
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def cifar100(archive, n):
    """The first n training images (N×3×32×32, normalised) and fine labels of the binary archive."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("train.bin"))
        raw = tar.extractfile(member).read(n * 3074)
    records = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(n, 3074)
    images = records[:, 2:].reshape(n, 3, 32, 32).float() / 255.0
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std, records[:, 1].long()


class Network(torch.nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem (3×3 conv, no max-pool) and SAMix's two heads:
    one for clean images, one for mixed ones."""

    def __init__(self, classes=100):
        super().__init__()
        net = torchvision.models.resnet18(num_classes=classes)
        net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = torch.nn.Identity()
        self.net, self.mix_head = net, torch.nn.Linear(512, classes)

    def features(self, x):
        """Pooled features and the stage-3 map (256 channels, 8×8 for 32-pixel images)."""
        n = self.net
        h = n.layer2(n.layer1(n.relu(n.bn1(n.conv1(x)))))
        stage3 = n.layer3(h)
        return torch.flatten(n.avgpool(n.layer4(stage3)), 1), stage3


def samix_losses(model, critic, mixer, mask_loss, mixer_loss, x, y):
    n = x.shape[0]
    lam_mb, lam_bb = torch.distributions.Beta(ALPHA, ALPHA).sample((2,)).tolist()
    perm_mb, perm_bb = torch.randperm(n), torch.randperm(n)
    with torch.no_grad():
        f = critic.features(x)[1]
    # Mixer branch: the mask keeps its graph; the critic is frozen, so only the Mixer learns.
    s_mb = mixer(f, perm_mb, lam_mb)
    x_mb = x * (1 - s_mb) + x[perm_mb] * s_mb
    lam_mb_n = torch.full((n,), lam_mb)
    mix_k = mixer_loss(critic.mix_head(critic.features(x_mb)[0]), y, y[perm_mb], lam_mb_n)
    mask = mask_loss(s_mb, lam_mb)
    # Backbone branch: the mask detached and post-processed; only the network learns.
    with torch.no_grad():
        s_bb = samix.backbone_mask(mixer(f, perm_bb, lam_bb), lam_bb, lam_margin=LAM_MARGIN)
    x_bb = x * (1 - s_bb) + x[perm_bb] * s_bb
    one_q = torch.nn.functional.cross_entropy(model.net.fc(model.features(x)[0]), y)
    mix_q = samix.mixup_cross_entropy(model.mix_head(model.features(x_bb)[0]), y, y[perm_bb], torch.full((n,), lam_bb))
    return {"one_q": one_q, "mix_q": mix_q, "mix_k": mix_k, "mask": mask}


def main():
    default = os.path.join(os.environ.get("SAMIX_DATA", "../shared/datasets"), "cifar-100-binary.tar.gz")
    archive = sys.argv[1] if len(sys.argv) > 1 else default
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    torch.manual_seed(0)
    images, labels = cifar100(archive, count)

    model = Network()
    critic = copy.deepcopy(model).requires_grad_(False)
    mixer = samix.Mixer(in_channels=256, scale=4)  # SAMix's Mixer on stage 3 (32 / 8 = 4)
    mask_loss, mixer_loss = samix.MaskLoss("l1_variance", margin=0.1, weight=0.1), samix.MixerLoss("pair_local_global", eta=0.5)
    opt = torch.optim.SGD([*model.parameters(), *mixer.parameters()], lr=0.05, momentum=0.9, weight_decay=1e-4)

    clean = []
    for step in range(steps):
        batch = torch.arange(step * BATCH, (step + 1) * BATCH) % count
        x, y = images[batch], labels[batch]
        losses = samix_losses(model, critic, mixer, mask_loss, mixer_loss, x, y)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        with torch.no_grad():  # the critic's parameters follow; its BN statistics are its own
            torch._foreach_lerp_(list(critic.parameters()), list(model.parameters()), 1 - MOMENTUM)
        clean.append(losses["one_q"].item())
        if step % 10 == 0 or step + 1 == steps:
            print(f"step {step:>3}  " + "  ".join(f"{k} {v.item():.3f}" for k, v in losses.items()), flush=True)
    first, last = sum(clean[:10]) / 10, sum(clean[-10:]) / 10
    print(f"clean-image loss, mean of the first / last 10 steps: {first:.3f} -> {last:.3f}")
    if not last < first:
        sys.exit("the clean-image loss did not fall")


if __name__ == "__main__":
    main()
