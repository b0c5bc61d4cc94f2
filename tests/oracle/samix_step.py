"""Independent PyTorch oracle of ONE supervised online-SAMix training step (tests/parity/).

    samix_step.py DIR [--break DETAIL]

Reads DIR/init.safetensors (every variable before the step: online network `q.*` with its
classifier `q.fc` and mix head `q.head_mix.fc`, EMA copy `k.*`, Mixer `mixer.*`, BatchNorm running
statistics included), DIR/step.safetensors (images, labels, the two λ, the two pairings, the
area-adjust flag) and DIR/step.json (the step's settings and the `[mix]` table); runs the step;
writes DIR/oracle.safetensors with the four loss terms, both masks and `after.<name>` for every
variable.

Follows docs/ALGORITHM.md (the project's statement of the SAMix spec; § numbers below are its
sections) and docs/DESIGN.md, sharing no code with samix. Where each part comes from:
  * the step itself, its order and its stop-gradients ......... §3 (steps 1-12), §3.1
  * ResNet-18 with the CIFAR stem, GAP + fc heads ................ §2, §9
  * the Mixer: λ encoding g_k, value net, q/k on the
    concatenated pair, scaled softmax attention, upsampling,
    sigmoid, M = [1 - s, s] ...................................... §4.1-§4.5; upsampling factor §2.1
  * backbone-mask post-processing: area adjust, then the
    λ-margin fallback to plain mixup ............................ §3.3, §3.4 (target λ_bb: docs/DESIGN.md)
  * mask loss (L1+Variance etc., batch-level mean) ............... §4.6
  * Mixer loss: soft mixup CE and the η-balanced
    pair-local + η·global form (Form B) .......................... §5.2-§5.4 (default: docs/DESIGN.md)
  * SGD (PyTorch semantics, two parameter groups), EMA over
    parameters only, BN statistics from train-mode forwards ..... §3.5, §3.6, §10
  * with `"backbone": "vit"` in step.json: a ViT (heads on the final-norm class token) and
    AdamW with the paramwise rule, from vit_oracle.py ........... issue 26
The network is written functionally (torch.nn.functional over a dict of leaf tensors), gradients
come from autograd, SGD and EMA are written out by hand.

BatchNorm running statistics: every train-mode forward updates them once, in this order:
  k (EMA net) on the clean batch -> Mixer value BN (Mixer-branch call) -> Mixer value BN
  (backbone-branch call) -> k on the Mixer-branch images -> q on the clean batch -> q on the
  backbone-branch images.
So k's and q's statistics move twice, the Mixer's twice; the EMA update never touches them.

--break DETAIL changes exactly one thing, so that the comparison can be shown to catch it:
  mask_not_detached  the backbone-branch mask keeps its gradient (L_mix_q also trains the Mixer)
  lambda_k           the Mixer's λ encoding uses k = 1 instead of the configured lam_mul_k
  ema_not_frozen     the EMA network is trained by SGD too (network settings), from the gradient
                     the Mixer-branch loss sends into it
"""
import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_losses import (  # noqa: E402,F401  (mask_regulariser is also the SSL oracle's)
    backbone_mixup_ce,
    mask_regulariser,
    mixer_branch_loss,
)
from step_optim import optimiser_step, sgd_first_step  # noqa: E402,F401  (sgd_first_step: SSL oracle's)
from vit_oracle import vit_forward, vit_pooled  # noqa: E402

BREAKS = ("mask_not_detached", "lambda_k", "ema_not_frozen")

# torch's BatchNorm defaults, which the CIFAR ResNet-18 and the Mixer's value net use (§9, §4.3).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
# ε of the area adjustment (§3.3).
ADJUST_EPS = 1e-8


def is_running_stat(name):
    return name.endswith(".running_mean") or name.endswith(".running_var")


def step_dtype(settings):
    """The floating type the step runs in: `settings["dtype"]` ("float32" or "float64"; the
    parity test runs both sides in float64, see tests/parity/), float32 when absent."""
    return {"float32": torch.float32, "float64": torch.float64}[settings.get("dtype", "float32")]


class Variables:
    """The step's variables: trainable leaves (`params`) and BN running statistics (`stats`),
    both keyed by the names samix stores them under, in floating type `dtype`."""

    def __init__(self, init, trainable_prefixes, dtype=torch.float32):
        self.params = {}
        self.stats = {}
        for name, t in init.items():
            t = t.detach().clone().to(dtype)
            if is_running_stat(name):
                self.stats[name] = t
            else:
                t.requires_grad_(name.startswith(trainable_prefixes))
                self.params[name] = t

    def batch_norm(self, name, h):
        """Train-mode BN: normalise with batch statistics, update the running ones in place."""
        return F.batch_norm(
            h,
            self.stats[f"{name}.running_mean"],
            self.stats[f"{name}.running_var"],
            self.params[f"{name}.weight"],
            self.params[f"{name}.bias"],
            training=True,
            momentum=BN_MOMENTUM,
            eps=BN_EPS,
        )


# A ReLU's derivative jumps at 0. An input within rounding error of 0 makes the gradient depend
# on the order of a sum (thread count, SIMD width), not on the algorithm. A step has millions of
# ReLU inputs, so the closest lies ~1e-8 to 1e-10 of its tensor's scale from 0: inside float32's
# accumulated rounding (in float32 one unit of the critic's layer4.0 output sat on opposite sides
# on the two sides of the comparison and moved the Mixer's update by 1.3%), far outside float64's
# (the two sides' float64 forwards agree to ~1e-15). So the step runs in float64, every ReLU
# input's distance from the kink is recorded (relative to its tensor's largest magnitude; exact
# zeros, which every precision and order give alike, left out), and main() refuses a step that
# came closer than KINK_MARGIN, which leaves float64's rounding a factor of 1000.
KINK_MARGIN = 1e-12
closest_to_kink = [math.inf]


def relu(h):
    with torch.no_grad():
        size = h.detach().abs()
        nonzero = size[size > 0]
        if nonzero.numel():
            closest_to_kink[0] = min(closest_to_kink[0], (nonzero.min() / size.max()).item())
    return F.relu(h)


def check_kinks(dtype):
    """Exits (status 3) when a ReLU input of the float64 step came within KINK_MARGIN of 0."""
    if dtype == torch.float64 and closest_to_kink[0] < KINK_MARGIN:
        raise SystemExit(f"a ReLU input came within {closest_to_kink[0]:.1e} of its kink (margin "
                         f"{KINK_MARGIN:.0e}): rounding, not the algorithm, would decide this comparison")


# ---------------------------------------------------------------------------------------------
# ResNet (docs/ALGORITHM.md §9): stem conv → BN → ReLU (CIFAR: 3×3 stride 1, no max-pool), four stages of
# BasicBlocks, stride 2 on the first 3×3 conv of stages 2-4, 1×1 conv + BN shortcut where the shape
# changes; GAP → fc heads.
# ---------------------------------------------------------------------------------------------


def stage_blocks(params, net):
    """[(stage index, [block prefixes])] as stored: `{net}.layer{i}.{j}`."""
    stages = []
    i = 1
    while f"{net}.layer{i}.0.conv1.weight" in params:
        blocks = []
        j = 0
        while f"{net}.layer{i}.{j}.conv1.weight" in params:
            if f"{net}.layer{i}.{j}.conv3.weight" in params:
                raise SystemExit("the oracle knows BasicBlock ResNets only (ResNet-18/34)")
            blocks.append(f"{net}.layer{i}.{j}")
            j += 1
        stages.append(blocks)
        i += 1
    return stages


def basic_block(v, block, h, stride):
    p = v.params
    out = F.conv2d(h, p[f"{block}.conv1.weight"], stride=stride, padding=1)
    out = relu(v.batch_norm(f"{block}.bn1", out))
    out = F.conv2d(out, p[f"{block}.conv2.weight"], stride=1, padding=1)
    out = v.batch_norm(f"{block}.bn2", out)
    if f"{block}.downsample.0.weight" in p:
        skip = F.conv2d(h, p[f"{block}.downsample.0.weight"], stride=stride)
        skip = v.batch_norm(f"{block}.downsample.1", skip)
    else:
        skip = h
    return relu(out + skip)


def resnet_forward(v, net, x, keep_stage=None):
    """Runs every stage of network `net` (train mode) on x; returns (last stage's map, the map of
    0-based stage `keep_stage` or None). The whole network runs even when only a middle stage is
    wanted: the reference's encoder returns [stage-(mask_layer+1), last] from one call (§2)."""
    p = v.params
    stem = p[f"{net}.conv1.weight"]
    if stem.shape[-1] == 3:  # CIFAR stem
        h = relu(v.batch_norm(f"{net}.bn1", F.conv2d(x, stem, stride=1, padding=1)))
    else:  # ImageNet stem: 7×7 stride 2 + max-pool
        h = relu(v.batch_norm(f"{net}.bn1", F.conv2d(x, stem, stride=2, padding=3)))
        h = F.max_pool2d(h, 3, 2, 1)
    kept = None
    for i, blocks in enumerate(stage_blocks(p, net)):
        for j, block in enumerate(blocks):
            h = basic_block(v, block, h, 2 if (j == 0 and i > 0) else 1)
        if i == keep_stage:
            kept = h
    return h, kept


def linear_head(v, head, h):
    """GAP → flatten → fc (`{head}.weight`, `{head}.bias`)."""
    return F.linear(h.mean(dim=(2, 3)), v.params[f"{head}.weight"], v.params[f"{head}.bias"])


# ---------------------------------------------------------------------------------------------
# The Mixer (docs/ALGORITHM.md §4, SAMix variant).
# ---------------------------------------------------------------------------------------------


def rescaled_lambda(lam, k):
    """g_k(λ) = ((4/3)λ³ − 2λ² + (k+1)λ) / (k + 1/3) (§4.2); k < 0 leaves λ as is, k is capped at 10."""
    if k < 0:
        return lam
    k = min(k, 10.0)
    return ((4.0 / 3.0) * lam**3 - 2.0 * lam**2 + (k + 1.0) * lam) / (k + 1.0 / 3.0)


def upsampling_factor(image_side, mask_stage):
    """r of §2.1: 2^(2+mask_layer) for standard ResNets on images wider than 64 px, else 2^mask_layer."""
    return 2 ** (2 + mask_stage) if image_side > 64 else 2**mask_stage


def mixer_mask(v, f, perm, lam, mixer_cfg, mask_stage, image_side):
    """s ∈ [0,1]^{N×1×H×W}, the weight of the paired sample f[perm] (§4.1-§4.5)."""
    p = v.params
    if mixer_cfg["variant"] != "samix":
        raise SystemExit(f"the oracle implements the SAMix Mixer only, not `{mixer_cfg['variant']}`")
    if mixer_cfg["value_dropout"] > 0:
        raise SystemExit("value dropout draws a random mask the oracle cannot reproduce")
    n, c, h, w = f.shape
    # §4.1 pair construction, §4.2 residual multiplicative λ encoding (lam_mul = 1).
    lam_enc = rescaled_lambda(lam, mixer_cfg["lam_mul_k"])
    x_i = f * (1.0 + lam_enc)
    x_j = f[perm] * (1.0 + (1.0 - lam_enc))
    # §4.3 value net on the (encoded) second sample: conv1×1 → BN → ELU → conv1×1 (no biases).
    value = F.conv2d(x_j, p["mixer.value.conv1.weight"])
    value = F.elu(v.batch_norm("mixer.value.bn", value), alpha=1.0)
    value = F.conv2d(value, p["mixer.value.conv2.weight"])  # N×1×h×w
    value = value.reshape(n, 1, h * w).transpose(1, 2)  # N×hw×1
    # §4.4 q and k from separate 1×1 convs (with bias) on the concatenated pair.
    pair = torch.cat([x_i, x_j], dim=1)
    query = F.conv2d(pair, p["mixer.query.weight"], p["mixer.query.bias"])
    key = F.conv2d(pair, p["mixer.key.weight"], p["mixer.key.bias"])
    d = query.shape[1]
    query = query.reshape(n, d, h * w).transpose(1, 2)  # N×hw×d
    key = key.reshape(n, d, h * w)  # N×d×hw
    attention = torch.softmax(torch.bmm(query, key) / math.sqrt(d), dim=-1)  # over keys
    # §4.5 mask: P·v at low resolution, upsample, then sigmoid.
    low = torch.bmm(attention, value).reshape(n, 1, h, w)
    r = upsampling_factor(image_side, mask_stage)
    mode = mixer_cfg.get("upsample") or "bilinear"
    if mode == "bilinear":
        up = F.interpolate(low, scale_factor=r, mode="bilinear", align_corners=False)
    else:
        up = F.interpolate(low, scale_factor=r, mode="nearest")
    assert up.shape[-1] == image_side, f"mask side {up.shape[-1]} != image side {image_side} (§2.1 rule)"
    return torch.sigmoid(up)


def adjust_area(s, target):
    """§3.3: rescale each sample's mask so the first image covers exactly `target` of the pixels."""
    first = (1.0 - s[:, 0]).clamp(ADJUST_EPS, 1.0 - ADJUST_EPS)  # N×H×W weight of the first image
    mean_first = first.mean(dim=(1, 2), keepdim=True)
    too_much_first = mean_first > target + ADJUST_EPS
    too_little_first = mean_first < target - ADJUST_EPS
    s_when_shrinking_first = 1.0 - first * (target / mean_first)
    s_when_shrinking_second = (1.0 - first) * ((1.0 - target) / (1.0 - mean_first))
    adjusted = torch.where(too_much_first, s_when_shrinking_first,
                           torch.where(too_little_first, s_when_shrinking_second, s[:, 0]))
    return adjusted.unsqueeze(1)


def post_process_backbone_mask(s, lam, adjust, lam_margin):
    """§3.3 (if this step's draw says so) then §3.4."""
    if adjust:
        # Target = the λ the mask was generated for and is labelled with (docs/DESIGN.md), not λ_mb.
        s = adjust_area(s, lam)
    if lam <= lam_margin or 1.0 - lam <= lam_margin:
        # Plain input mixup: first image weight λ everywhere.
        s = torch.full_like(s, 1.0 - lam)
    return s


def mix_images(x, perm, s):
    """x ⊙ M[:,0] + x[perm] ⊙ M[:,1] with M = [1 − s, s] (§1)."""
    return x * (1.0 - s) + x[perm] * s


# ---------------------------------------------------------------------------------------------
# The step (§3, steps 3-12).
# ---------------------------------------------------------------------------------------------


def run_step(init, step, settings, broken):
    mix = settings["mix"]
    mixer_cfg = dict(mix["mixer"])
    if broken == "lambda_k":
        mixer_cfg["lam_mul_k"] = 1.0
    trainable = ("q.", "mixer.", "k.") if broken == "ema_not_frozen" else ("q.", "mixer.")
    dtype = step_dtype(settings)
    v = Variables(init, trainable, dtype)

    x, y = step["x"].to(dtype), step["y"].long()
    lam_mb, lam_bb = float(step["lam_mb"]), float(step["lam_bb"])
    perm_mb, perm_bb = step["perm_mb"].long(), step["perm_bb"].long()
    adjust_bb = float(step["adjust_bb"]) == 1.0 and mix["mask_adjust"] > 0.0
    mask_stage = mix["mask_stage"]
    side = x.shape[-1]
    smoothing = settings["label_smoothing"]

    # The backbone: the ResNet of §9, or a ViT (vit_oracle.py) whose heads read the normalised
    # class token; `head(net, name, h)` is the linear layer `name` on network `net`'s features.
    if settings.get("backbone", "resnet") == "vit":
        heads = settings["vit_heads"]

        def forward(net, images, keep=None):
            return vit_forward(v, net, images, heads, keep)

        def head(net, name, h):
            return F.linear(vit_pooled(v, net, h), v.params[f"{name}.weight"], v.params[f"{name}.bias"])

        classifier = "q.head"
    else:

        def forward(net, images, keep=None):
            return resnet_forward(v, net, images, keep_stage=keep)

        def head(net, name, h):
            return linear_head(v, name, h)

        classifier = "q.fc"

    # Step 3: EMA encoder's stage features, no gradient, train-mode BN (batch statistics; its own
    # running statistics move).
    with torch.no_grad():
        _, f = forward("k", x, mask_stage)

    # Step 4: Mixer-branch mask with gradient to the Mixer, then the backbone-branch mask.
    s_mb = mixer_mask(v, f, perm_mb, lam_mb, mixer_cfg, mask_stage, side)
    if broken == "mask_not_detached":
        s_bb_raw = mixer_mask(v, f, perm_bb, lam_bb, mixer_cfg, mask_stage, side)
    else:
        with torch.no_grad():
            s_bb_raw = mixer_mask(v, f, perm_bb, lam_bb, mixer_cfg, mask_stage, side)
    # Step 5: post-processing of the backbone mask only.
    s_bb = post_process_backbone_mask(s_bb_raw, lam_bb, adjust_bb, mix["lam_margin"])

    # Step 6: mask regulariser on the Mixer-branch mask.
    loss_mask = mask_regulariser(s_mb, lam_mb, mix["mask_loss"])

    # Step 7: the two mixed batches.
    x_mb = mix_images(x, perm_mb, s_mb)
    x_bb = mix_images(x, perm_bb, s_bb)

    # Step 8: Mixer branch through the frozen EMA network + EMA mix head.
    h_k, _ = forward("k", x_mb)
    loss_mix_k = mixer_branch_loss(head("k", "k.head_mix.fc", h_k), y, y[perm_mb], lam_mb, mix["mixer_loss"])

    # Step 9: online network on clean images (classifier → CE), then on backbone-branch images
    # (mix head → mixup CE).
    h_clean, _ = forward("q", x)
    loss_one_q = F.cross_entropy(head("q", classifier, h_clean), y, label_smoothing=smoothing)
    h_mix, _ = forward("q", x_bb)
    loss_mix_q = backbone_mixup_ce(head("q", "q.head_mix.fc", h_mix), y, y[perm_bb], lam_bb, smoothing)

    # Step 10-11: one backward of the summed loss, one optimiser step per parameter group.
    total = loss_mix_q + loss_one_q + loss_mix_k + loss_mask
    total.backward()
    for name, param in v.params.items():
        if param.requires_grad:
            optimiser_step(name, param, settings)

    # Step 12: EMA of the online parameters into the EMA copy (§3.5: parameters only; k's BN
    # running statistics stay what its own two forwards made them).
    m = settings["ema_momentum"]
    if m < 1.0:
        with torch.no_grad():
            for name, param in v.params.items():
                if name.startswith("k."):
                    online = v.params["q." + name[2:]]
                    param.copy_(m * param + (1.0 - m) * online)

    out = {
        "loss_one_q": loss_one_q.detach(),
        "loss_mix_q": loss_mix_q.detach(),
        "loss_mix_k": loss_mix_k.detach(),
        "loss_mask": loss_mask.detach(),
        "s_mb": s_mb.detach(),
        "s_bb": s_bb.detach(),
    }
    for name in init:
        t = v.stats[name] if is_running_stat(name) else v.params[name]
        out[f"after.{name}"] = t.detach()
    return {k: t.to(dtype).contiguous().clone() for k, t in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--break", dest="broken", choices=BREAKS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    init = load_file(args.dir / "init.safetensors")
    step = load_file(args.dir / "step.safetensors")
    settings = json.loads((args.dir / "step.json").read_text())
    out = run_step(init, step, settings, args.broken)
    check_kinks(step_dtype(settings))
    save_file(out, str(args.dir / "oracle.safetensors"))


if __name__ == "__main__":
    main()
