"""Independent PyTorch oracle of ONE self-supervised SAMix training step (MoCo v2 + SAMix, tests/parity/).

    samix_ssl_step.py DIR [--break DETAIL]

Reads DIR/init.safetensors (every variable before the step: query encoder `q.*` with its MoCo
neck `q.neck.fc1`/`q.neck.fc2` and its unused classifier `q.fc`, their momentum copies `k.*`, the
queue `moco.queue` (D×K, columns = unit keys), the Mixer `mixer.*`, BatchNorm running statistics
included), DIR/step.safetensors (the two views x1, x2, the key shuffle, the two λ, the two
pairings, the area-adjust flag) and DIR/step.json (the step's settings, `[ssl]` and `[mix]`);
runs the step; writes DIR/oracle.safetensors with the four loss terms, both masks, the enqueued
keys and `after.<name>` for every variable.

Follows docs/ALGORITHM.md (the project's statement of the SAMix spec; § numbers below are its
sections) and docs/SSL.md, sharing no code with samix. The ResNet, the BatchNorm bookkeeping, the
λ encoding, the area adjustment, the mask regulariser and the first SGD step are the supervised
oracle's (samix_step.py, same folder, imported); the rest is here. Where each part comes from:
  * the step, its order and its stop-gradients ................... §6.2, docs/SSL.md
  * MoCo v2: momentum update over parameters before the keys,
    MLP neck (GAP → Linear → ReLU → Linear), L2-normalised
    embeddings, InfoNCE = CE over [pos, queue]/τ (positive first),
    enqueue the key view's keys ..................................... §6.1, §6.2 (1)
  * shuffle-BN in one process: the 2N key images in a drawn order,
    `key_bn_groups` sub-batches with their own batch statistics,
    un-shuffled afterwards .......................................... docs/SSL.md "Shuffle-BN"
  * the Mixer on a pair [f_a, f_b] (SSL: idx = None) .............. §4.1-§4.5; upsampling factor §2.1
  * backbone mask: "auto" area adjustment per sample beyond
    mean_margin (target λ_bb), then the λ-margin fallback ......... §6.3, §3.3, §3.4
  * mixed InfoNCE (global), pair softmax (local), local + η·global  §5.5
  * global + η·local with the local term's positives extended
    (the reference's main infoNCE + auxiliary BCE, feat_pos_extend):
    p_a = n(u⊙k2 + (1−u)⊙k1), p_b = n(u⊙k1 + (1−u)⊙k2) permuted
    with the pair, u given (step.safetensors `pos_extend`) ......... openmixup moco_samix.py
                                                                      pos_feat_extension, docs/SSL.md
  * one permutation per branch for features, images and keys;
    positives = the other views of both sources .................... §6.2 note, §11 item 11, docs/SSL.md
  * SGD (PyTorch semantics, two parameter groups), BN statistics
    from train-mode forwards ........................................ §3.6, §10
The networks are written functionally (torch.nn.functional over a dict of leaf tensors), gradients
come from autograd, SGD and the momentum update are written out by hand.

BatchNorm running statistics: every train-mode forward updates them once, in this order:
  q on view 1 -> k on each of the key_bn_groups key sub-batches (in sub-batch order) -> Mixer
  value BN (backbone-branch call) -> q on the backbone-branch images -> Mixer value BN
  (Mixer-branch call) -> k on the Mixer-branch images.
So q's statistics move twice, k's key_bn_groups + 1 times, the Mixer's twice; the momentum update
never touches them.

--break DETAIL changes exactly one thing, so that the comparison can be shown to catch it:
  leaky_positive     the backbone branch's second positive is k2[perm_bb] (the key of the very
                     view the mixed image contains) instead of k1[perm_bb]
  mask_not_detached  the backbone-branch mask keeps its gradient (L_mix also trains the Mixer)
  no_momentum        the key side's momentum update (step 1) is skipped
  pos_extend_unpermuted  the partner's extended positive is taken from row i instead of perm[i]
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
from samix_step import (  # noqa: E402  (the supervised oracle's helpers)
    Variables,
    adjust_area,
    check_kinks,
    relu,
    step_dtype,
    is_running_stat,
    mask_regulariser,
    rescaled_lambda,
    resnet_forward,
    sgd_first_step,
    upsampling_factor,
)

BREAKS = ("leaky_positive", "mask_not_detached", "no_momentum", "pos_extend_unpermuted")


# ---------------------------------------------------------------------------------------------
# MoCo v2 (docs/ALGORITHM.md §6.1).
# ---------------------------------------------------------------------------------------------


def embed(v, net, x, keep_stage=None):
    """normalize(neck(GAP(encoder(x)))) in train mode; also the map of 0-based stage `keep_stage`.
    The neck is `{net}.neck.fc1` → ReLU → `{net}.neck.fc2`."""
    p = v.params
    last, kept = resnet_forward(v, net, x, keep_stage=keep_stage)
    h = relu(F.linear(last.mean(dim=(2, 3)), p[f"{net}.neck.fc1.weight"], p[f"{net}.neck.fc1.bias"]))
    z = F.linear(h, p[f"{net}.neck.fc2.weight"], p[f"{net}.neck.fc2.bias"])
    return F.normalize(z, dim=1), kept


def keys_and_maps(v, x, shuffle, groups, mask_stage):
    """Shuffle-BN within one process: the images in the order `shuffle`, split into `groups`
    consecutive sub-batches, each through the key encoder in train mode (its own batch
    statistics); keys and stage maps are put back into x's order."""
    shuffled = x[shuffle]
    keys, maps = [], []
    for chunk in torch.chunk(shuffled, groups, dim=0):
        if chunk.shape[0] < 2:
            raise SystemExit("a key sub-batch of one image has no batch statistics")
        k, f = embed(v, "k", chunk, keep_stage=mask_stage)
        keys.append(k)
        maps.append(f)
    keys, maps = torch.cat(keys), torch.cat(maps)
    # Row i of the shuffled batch is image shuffle[i]: scatter it back there.
    out_keys, out_maps = torch.empty_like(keys), torch.empty_like(maps)
    out_keys[shuffle] = keys
    out_maps[shuffle] = maps
    return out_keys, out_maps


def info_nce(z, pos, queue, tau):
    """Per-sample CE of the positive among [z·pos, z·queue]/τ, positive at index 0 (§6.1)."""
    logits = torch.cat([(z * pos).sum(dim=1, keepdim=True), z @ queue], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(z.shape[0], dtype=torch.long), reduction="none")


def global_mixed_loss(z, pos_a, pos_b, lam, queue, tau):
    """§5.5 global: λ·InfoNCE(z, pos_a) + (1−λ)·InfoNCE(z, pos_b) against the queue, batch mean."""
    return (lam * info_nce(z, pos_a, queue, tau) + (1.0 - lam) * info_nce(z, pos_b, queue, tau)).mean()


def local_mixed_loss(z, pos_a, pos_b, lam, tau):
    """§5.5 local: a two-way softmax over [z·pos_a, z·pos_b]/τ fitted to (λ, 1−λ), batch mean."""
    pair = torch.stack([(z * pos_a).sum(dim=1), (z * pos_b).sum(dim=1)], dim=1) / tau
    log_p = F.log_softmax(pair, dim=1)
    return -(lam * log_p[:, 0] + (1.0 - lam) * log_p[:, 1]).mean()


def extended(pos, own, u):
    """The reference's extended positive: the L2-normalised element-wise blend u·pos + (1−u)·own."""
    return F.normalize(u * pos + (1.0 - u) * own, dim=1)


def mixer_loss(z, pos_a, pos_b, lam, queue, tau, ssl, extension=None):
    kind = ssl["mixer_loss"]
    if kind == "global_local":
        local_a, local_b = pos_a, pos_b
        if extension is not None:
            local_a, local_b = extension
        return global_mixed_loss(z, pos_a, pos_b, lam, queue, tau) + ssl["eta"] * local_mixed_loss(
            z, local_a, local_b, lam, tau
        )
    if kind == "global":
        return global_mixed_loss(z, pos_a, pos_b, lam, queue, tau)
    if kind == "local":
        return local_mixed_loss(z, pos_a, pos_b, lam, tau)
    if kind == "local_global":
        return local_mixed_loss(z, pos_a, pos_b, lam, tau) + ssl["eta"] * global_mixed_loss(
            z, pos_a, pos_b, lam, queue, tau
        )
    raise SystemExit(f"unknown ssl.mixer_loss `{kind}`")


# ---------------------------------------------------------------------------------------------
# The Mixer on a pair (docs/ALGORITHM.md §4, SAMix variant; SSL: x_i = f_a, x_j = f_b, §4.1).
# ---------------------------------------------------------------------------------------------


def mixer_mask(v, f_a, f_b, lam, mixer_cfg, mask_stage, image_side):
    """s ∈ [0,1]^{N×1×H×W}, the weight of the second sample f_b (§4.2-§4.5)."""
    p = v.params
    if mixer_cfg["variant"] != "samix":
        raise SystemExit(f"the oracle implements the SAMix Mixer only, not `{mixer_cfg['variant']}`")
    if mixer_cfg["value_dropout"] > 0:
        raise SystemExit("value dropout draws a random mask the oracle cannot reproduce")
    n, _, h, w = f_a.shape
    lam_enc = rescaled_lambda(lam, mixer_cfg["lam_mul_k"])  # §4.2, residual "mul" encoding
    x_i = f_a * (1.0 + lam_enc)
    x_j = f_b * (1.0 + (1.0 - lam_enc))
    value = F.conv2d(x_j, p["mixer.value.conv1.weight"])  # §4.3
    value = F.elu(v.batch_norm("mixer.value.bn", value), alpha=1.0)
    value = F.conv2d(value, p["mixer.value.conv2.weight"]).reshape(n, 1, h * w).transpose(1, 2)
    pair = torch.cat([x_i, x_j], dim=1)  # §4.4
    query = F.conv2d(pair, p["mixer.query.weight"], p["mixer.query.bias"])
    key = F.conv2d(pair, p["mixer.key.weight"], p["mixer.key.bias"])
    d = query.shape[1]
    attention = torch.softmax(
        torch.bmm(query.reshape(n, d, h * w).transpose(1, 2), key.reshape(n, d, h * w)) / math.sqrt(d), dim=-1
    )
    low = torch.bmm(attention, value).reshape(n, 1, h, w)  # §4.5
    r = upsampling_factor(image_side, mask_stage)
    if (mixer_cfg.get("upsample") or "bilinear") == "bilinear":
        up = F.interpolate(low, scale_factor=r, mode="bilinear", align_corners=False)
    else:
        up = F.interpolate(low, scale_factor=r, mode="nearest")
    assert up.shape[-1] == image_side, f"mask side {up.shape[-1]} != image side {image_side} (§2.1 rule)"
    return torch.sigmoid(up)


def post_process_backbone_mask(s, lam, ssl, mix, adjust_flag):
    """§6.3: "auto" rescales each sample whose first-image share is further than mean_margin from
    λ to exactly λ (§3.3's formula); "probability" rescales the whole batch when this step's flag
    is set. Then the λ-margin fallback to plain mixup (§3.4)."""
    if ssl["mask_adjust"] == "auto":
        share = (1.0 - s).mean(dim=(1, 2, 3))
        far = (share - lam).abs() > ssl["mean_margin"]
        s = torch.where(far[:, None, None, None], adjust_area(s, lam), s)
    elif adjust_flag and mix["mask_adjust"] > 0.0:
        s = adjust_area(s, lam)
    if lam <= mix["lam_margin"] or 1.0 - lam <= mix["lam_margin"]:
        s = torch.full_like(s, 1.0 - lam)
    return s


def mix_pair(x_a, x_b, s):
    """x_a ⊙ (1 − s) + x_b ⊙ s (§1: s weights the second image)."""
    return x_a * (1.0 - s) + x_b * s


# ---------------------------------------------------------------------------------------------
# The step (§6.2).
# ---------------------------------------------------------------------------------------------


def run_step(init, step, settings, broken):
    ssl, mix = settings["ssl"], settings["mix"]
    mixer_cfg = mix["mixer"]
    dtype = step_dtype(settings)
    v = Variables(init, ("q.", "mixer."), dtype)
    for name, t in v.params.items():
        if name.startswith("q.fc."):  # the query side's classifier is frozen and unused
            t.requires_grad_(False)

    x1, x2 = step["x1"].to(dtype), step["x2"].to(dtype)
    shuffle = step["key_shuffle"].long()
    lam_mb, lam_bb = float(step["lam_mb"]), float(step["lam_bb"])
    perm_mb, perm_bb = step["perm_mb"].long(), step["perm_bb"].long()
    adjust_flag = float(step["adjust_bb"]) == 1.0
    mask_stage, side, n = mix["mask_stage"], x1.shape[-1], x1.shape[0]
    tau = ssl["temperature"]
    queue = v.params["moco.queue"]

    # (1) Momentum update of the key side, over parameters only (the running statistics are the
    # key encoder's own), before the keys.
    m = settings["key_momentum"]
    if broken != "no_momentum" and m < 1.0:
        with torch.no_grad():
            for name, param in v.params.items():
                if name.startswith("k."):
                    param.copy_(m * param + (1.0 - m) * v.params["q." + name[2:]])

    # (1) Queries of view 1.
    q, _ = embed(v, "q", x1)

    # (1) Keys and stage maps of both views, shuffle-BN, no gradient.
    with torch.no_grad():
        k, f = keys_and_maps(v, torch.cat([x1, x2]), shuffle, ssl["key_bn_groups"], mask_stage)
    k1, k2, f1, f2 = k[:n], k[n:], f[:n], f[n:]
    loss_moco = info_nce(q, k2, queue, tau).mean()

    # (2)+(3) Backbone branch: view 1 of i with view 2 of perm_bb[i]; detached mask, post-processed;
    # positives k2[i] (λ) and k1[perm_bb[i]] (1 − λ).
    if broken == "mask_not_detached":
        s_bb_raw = mixer_mask(v, f1, f2[perm_bb], lam_bb, mixer_cfg, mask_stage, side)
    else:
        with torch.no_grad():
            s_bb_raw = mixer_mask(v, f1, f2[perm_bb], lam_bb, mixer_cfg, mask_stage, side)
    s_bb = post_process_backbone_mask(s_bb_raw, lam_bb, ssl, mix, adjust_flag)
    x_bb = mix_pair(x1, x2[perm_bb], s_bb)
    z_bb, _ = embed(v, "q", x_bb)
    pos_b = (k2 if broken == "leaky_positive" else k1)[perm_bb]
    loss_mix = global_mixed_loss(z_bb, k2, pos_b, lam_bb, queue, tau)

    # (2)+(4) Mixer branch: the mask with gradient, its regulariser, the frozen key side (train mode)
    # as the critic.
    s_mb = mixer_mask(v, f1, f2[perm_mb], lam_mb, mixer_cfg, mask_stage, side)
    loss_mask = mask_regulariser(s_mb, lam_mb, mix["mask_loss"])
    x_mb = mix_pair(x1, x2[perm_mb], s_mb)
    z_mb, _ = embed(v, "k", x_mb)
    extension = None
    if ssl.get("pos_extend"):
        u = step["pos_extend"].to(dtype)
        partner = torch.arange(n) if broken == "pos_extend_unpermuted" else perm_mb
        extension = (extended(k2, k1, u), extended(k1, k2, u)[partner])
    loss_mixer = mixer_loss(z_mb, k2, k1[perm_mb], lam_mb, queue, tau, ssl, extension)

    # One backward of the total, one SGD step per parameter group.
    total = loss_moco + ssl["mix_weight"] * loss_mix + loss_mixer + loss_mask
    total.backward()
    for name, param in v.params.items():
        if not param.requires_grad:
            continue
        if name.startswith("mixer."):
            sgd_first_step(param, settings["mixer_lr"], settings["mixer_momentum"],
                           settings["mixer_weight_decay"], settings["nesterov"] and settings["mixer_momentum"] > 0)
        else:
            sgd_first_step(param, settings["lr"], settings["momentum"], settings["weight_decay"],
                           settings["nesterov"])

    # Enqueue view 2's keys after the optimiser step (the losses read the old queue).
    with torch.no_grad():
        cols = (torch.arange(n) + settings["queue_position"]) % queue.shape[1]
        queue[:, cols] = k2.t()

    out = {
        "loss_moco": loss_moco.detach(),
        "loss_mix": loss_mix.detach(),
        "loss_mixer": loss_mixer.detach(),
        "loss_mask": loss_mask.detach(),
        "s_mb": s_mb.detach(),
        "s_bb": s_bb.detach(),
        "keys": k2.detach(),
    }
    for name in init:
        t = v.stats[name] if is_running_stat(name) else v.params[name]
        out[f"after.{name}"] = t.detach()
    return {key: t.to(dtype).contiguous().clone() for key, t in out.items()}


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
