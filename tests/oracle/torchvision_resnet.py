"""torchvision's own ResNets for the weights-interop test (tests/interop.rs).

  torchvision_resnet.py make ARCH DIR   builds torchvision.models.ARCH() with random weights and
      BatchNorm statistics, saves its state dict as DIR/torchvision.safetensors and a random
      input with the model's evaluation-mode logits as DIR/io.safetensors
  torchvision_resnet.py check ARCH DIR FILE   loads FILE (a state dict samix wrote) strictly into
      a fresh torchvision.models.ARCH() and prints the largest difference between its logits on
      DIR/io.safetensors's input and the logits stored there
"""
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file


def build(arch):
    return getattr(torchvision.models, arch)()


def main():
    mode, arch, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "make":
        torch.manual_seed(0)
        model = build(arch)
        with torch.no_grad():
            for name, t in model.state_dict().items():
                if name.endswith("running_var"):
                    t.copy_(torch.rand_like(t) + 0.5)
                elif t.is_floating_point():
                    t.copy_(torch.randn_like(t) * 0.05)
        model.eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            logits = model(x)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, f"{folder}/torchvision.safetensors")
        save_file({"input": x, "logits": logits}, f"{folder}/io.safetensors")
    elif mode == "check":
        model = build(arch)
        model.load_state_dict(load_file(sys.argv[4]), strict=True)
        model.eval()
        io = load_file(f"{folder}/io.safetensors")
        with torch.no_grad():
            logits = model(io["input"])
        print((logits - io["logits"]).abs().max().item())
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
