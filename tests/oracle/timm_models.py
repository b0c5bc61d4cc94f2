"""timm's own DeiT and ConvNeXt for the transformer interop tests (tests/timm_models.rs).

  timm_models.py make MODEL DIR   builds MODEL (below) with random weights (LayerNorm affines and
      ConvNeXt's layer scales drawn too, so every parameter matters), saves its state dict as
      DIR/timm.safetensors and a random input with the model's evaluation-mode logits as
      DIR/io.safetensors
  timm_models.py check MODEL DIR FILE   loads FILE (a state dict samix wrote) strictly into a
      fresh MODEL and prints the largest difference between its logits on DIR/io.safetensors's
      input and the logits stored there
  timm_models.py features MODEL DIR INDEX   saves the block/stage INDEX map timm's
      forward_intermediates gives on that input as DIR/features.safetensors

MODEL: swin_tiny (timm's swin_tiny_patch4_window7_224), swin_small_test (32 px, 2-px patches, width
24, depths 2-2, heads 2-4, 4×4 windows, 10 classes: shifted windows in both stages),
deit_tiny (timm's deit_tiny_patch16_224, 224 px), vit_small_test (32 px, patch 8, width 48,
depth 2, 3 heads, 10 classes), convnext_tiny (timm's, 224 px), convnext_cifar_test (widths
16-32-64-128, depths 1-1-2-1, 10 classes, 32 px, with the reference's ConvNeXt_CIFAR stem: a 3x3
stride-1 convolution in place of timm's 4x4 patchify one).
"""
import sys

import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models.convnext import ConvNeXt
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer


def build(name):
    """The model and its input side."""
    if name == "deit_tiny":
        return timm.create_model("deit_tiny_patch16_224", pretrained=False), 224
    if name == "vit_small_test":
        return VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=10), 32
    if name == "convnext_tiny":
        return timm.create_model("convnext_tiny", pretrained=False), 224
    if name == "convnext_cifar_test":
        model = ConvNeXt(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), num_classes=10)
        model.stem[0] = torch.nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1)
        return model, 32
    if name == "swin_tiny":
        return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False), 224
    if name == "swin_small_test":
        model = SwinTransformer(img_size=32, patch_size=2, embed_dim=24, depths=(2, 2), num_heads=(2, 4),
                                window_size=4, num_classes=10)
        return model, 32
    raise SystemExit(f"unknown model {name}")


def randomise(model):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("gamma"):
                t.copy_(torch.rand_like(t) * 0.5)
            elif t.is_floating_point():
                t.copy_(t + torch.randn_like(t) * 0.05)


def main():
    mode, name, folder = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    model, side = build(name)
    model.eval()
    if mode == "make":
        randomise(model)
        x = torch.randn(2, 3, side, side)
        with torch.no_grad():
            logits = model(x)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, f"{folder}/timm.safetensors")
        save_file({"input": x, "logits": logits}, f"{folder}/io.safetensors")
    elif mode == "check":
        model.load_state_dict(load_file(sys.argv[4]), strict=True)
        io = load_file(f"{folder}/io.safetensors")
        with torch.no_grad():
            logits = model(io["input"])
        print((logits - io["logits"]).abs().max().item())
    elif mode == "features":
        model.load_state_dict(load_file(f"{folder}/timm.safetensors"), strict=True)
        io = load_file(f"{folder}/io.safetensors")
        with torch.no_grad():
            maps = model.forward_intermediates(io["input"], indices=[int(sys.argv[4])], intermediates_only=True)
        save_file({"map": maps[0].contiguous()}, f"{folder}/features.safetensors")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
