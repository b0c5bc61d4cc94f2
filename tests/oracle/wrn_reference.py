"""An independent PyTorch statement of the SAMix reference's Wide ResNet (docs/ALGORITHM.md §9), for
tests/models.rs: reads weights and an input from an .npz written by the test (samix's variable
names), runs the network with torch's own functional ops in training and evaluation mode, and
prints the logits and every BatchNorm running mean after the training-mode pass as JSON.

The semantics stated here, not derived from samix's code:
  stem: 3x3 conv with bias. Three stages of pre-activation wide blocks; first block of stage s
  has stride 1 (s = 1) or 2, the others stride 1.
  block(x): a = LeakyReLU_0.1(BN(x)); y = conv2(LeakyReLU_0.1(BN2(conv1(a)))) (convs with bias);
  shortcut = identity(x) when in == out channels and stride 1, otherwise a 1x1 conv with bias
  reading a (stage 1) or the raw x (stages 2 and 3); out = y + shortcut.
  After stage 3: LeakyReLU_0.1(BN(x)), global average pooling, linear classifier.
  BatchNorm: eps 1e-3, momentum 0.001 (torch's convention: running = (1 - m) running + m batch).

Usage: wrn_reference.py WEIGHTS.npz BLOCKS (e.g. 2,2,2)
"""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

EPS, MOMENTUM, SLOPE = 1e-3, 0.001, 0.1


def main():
    data = np.load(sys.argv[1])
    blocks = [int(b) for b in sys.argv[2].split(",")]
    w = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    x = w.pop("input")
    out = {}
    for mode in ("train", "eval"):
        # Each mode starts from the weights as given (a fresh copy of the running statistics).
        params = {k: v.clone() for k, v in w.items()}
        training = mode == "train"

        def bn(prefix, h):
            return F.batch_norm(h, params[prefix + ".running_mean"], params[prefix + ".running_var"],
                                params[prefix + ".weight"], params[prefix + ".bias"],
                                training=training, momentum=MOMENTUM, eps=EPS)

        def conv(prefix, h, stride):
            weight = params[prefix + ".weight"]
            return F.conv2d(h, weight, params[prefix + ".bias"], stride=stride, padding=weight.shape[-1] // 2)

        def act(h):
            return F.leaky_relu(h, SLOPE)

        h = conv("conv1", x, 1)
        for s, n in enumerate(blocks):
            for j in range(n):
                p = f"layer{s + 1}.{j}"
                stride = 2 if (j == 0 and s > 0) else 1
                a = act(bn(p + ".bn1", h))
                y = conv(p + ".conv2", act(bn(p + ".bn2", conv(p + ".conv1", a, stride))), 1)
                if p + ".shortcut.weight" in params:
                    shortcut = conv(p + ".shortcut", a if s == 0 else h, stride)
                else:
                    shortcut = h
                h = y + shortcut
        h = act(bn("bn_final", h))
        logits = F.linear(h.mean(dim=(2, 3)), params["fc.weight"], params["fc.bias"])
        out[mode] = logits.flatten().tolist()
        if training:
            out["running_mean"] = {k[: -len(".running_mean")]: v.tolist()
                                   for k, v in params.items() if k.endswith(".running_mean")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
