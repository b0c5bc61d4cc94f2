"""The loss terms of the SAMix step oracle (tests/oracle/samix_step.py): the mask regulariser
(docs/ALGORITHM.md §4.6), the soft mixup CE and the η-balanced pair-local + global form (§5.2-§5.4),
the online network's mixup CE (§5.1). Shares no code with samix.
"""
import torch
import torch.nn.functional as F


def mask_regulariser(s, lam, cfg):
    """`weight × MaskLoss(s, λ)` of §4.6 (s = M[:,1]); one m̄ over the whole batch, or one per
    sample (then the per-sample losses are averaged) when per_sample."""
    n = s.shape[0]
    groups = s.reshape(n, -1) if cfg["per_sample"] else s.reshape(1, -1)
    mean = groups.mean(dim=1)
    variance = ((groups - mean[:, None]) ** 2).mean(dim=1).clamp(min=0.0)
    gap = 1.0 - mean - lam
    margin = cfg["margin"]
    mode = cfg["mode"]
    if mode == "l1":
        per_group = (gap.abs() - margin).clamp(min=0.0)
    elif mode == "l1_variance":
        per_group = (gap.abs() - margin).clamp(min=0.0) - 2.0 * variance
    elif mode == "l2_variance":
        per_group = (gap**2 - margin**2).clamp(min=0.0) - 2.0 * variance
    elif mode == "sparsity":
        per_group = ((groups * (groups - 1.0)).abs().mean(dim=1) - margin).clamp(min=0.0)
    else:
        raise SystemExit(f"unknown mask loss mode `{mode}`")
    return per_group.mean() * cfg["weight"]


def mixed_target(y_a, y_b, lam, classes, dtype):
    """ỹ = λ·e_{y_a} + (1−λ)·e_{y_b} (equals e_{y_a} when the labels coincide)."""
    return lam * F.one_hot(y_a, classes).to(dtype) + (1.0 - lam) * F.one_hot(y_b, classes).to(dtype)


def soft_mixup_ce(logits, y_a, y_b, lam):
    """§5.2 form 2 / §5.3: −(1/N) Σ_n Σ_c ỹ_nc log softmax(z_n)_c."""
    target = mixed_target(y_a, y_b, lam, logits.shape[1], logits.dtype)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def pair_local_global(logits, y_a, y_b, lam, eta):
    """§5.4 Form B: local = 2-way softmax CE between the two mixed classes, global = mixup CE over
    all classes; ℓ = local + η·global, batch means. A pair of equal labels has one class only, so
    its local term (a 1-way softmax) is 0."""
    pair = torch.stack([logits.gather(1, y_a[:, None])[:, 0], logits.gather(1, y_b[:, None])[:, 0]], dim=1)
    log_p = F.log_softmax(pair, dim=1)
    local = -(lam * log_p[:, 0] + (1.0 - lam) * log_p[:, 1])
    local = torch.where(y_a == y_b, torch.zeros_like(local), local)
    return local.mean() + eta * soft_mixup_ce(logits, y_a, y_b, lam)


def mixer_branch_loss(logits, y_a, y_b, lam, cfg):
    kind = cfg["kind"]
    if kind == "soft_ce":
        return soft_mixup_ce(logits, y_a, y_b, lam)
    if kind == "pair_local_global":
        return pair_local_global(logits, y_a, y_b, lam, cfg["eta"])
    raise SystemExit(f"the oracle implements soft_ce and pair_local_global, not `{kind}`")


def backbone_mixup_ce(logits, y_a, y_b, lam, smoothing):
    """Step 9: λ·CE(z, y_a) + (1−λ)·CE(z, y_b) (the online mix head never uses η, §5.1)."""
    return lam * F.cross_entropy(logits, y_a, label_smoothing=smoothing) + (1.0 - lam) * F.cross_entropy(
        logits, y_b, label_smoothing=smoothing
    )
