"""The optimisers of the step oracles (tests/oracle/samix_step.py, samix_ssl_step.py): the first
update of torch.optim.SGD and of torch.optim.AdamW written out by hand, and the reference's
parameter-wise decay rule as samix states it. Shares no code with samix.
"""
import math

import torch


@torch.no_grad()
def sgd_first_step(param, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD's update on the first step (dampening 0): d = g + wd·p; the momentum buffer
    starts as d; p -= lr·(d + m·buf if nesterov else buf). Parameters without a gradient are left
    alone, as torch does."""
    if param.grad is None:
        return
    d = param.grad + weight_decay * param
    if momentum != 0.0:
        buf = d.clone()
        d = d + momentum * buf if nesterov else buf
    param.sub_(lr * d)


def optimiser_step(name, param, settings):
    """The first update of `param` by its group: the Mixer's (`mixer.*`) or the network's; SGD, or
    AdamW with the paramwise decay rule when step.json says `"optimizer": "adamw"`."""
    mixer = name.startswith("mixer.")
    lr = settings["mixer_lr"] if mixer else settings["lr"]
    weight_decay = settings["mixer_weight_decay"] if mixer else settings["weight_decay"]
    if settings.get("optimizer", "sgd") == "adamw":
        weight_decay = weight_decay if decays(name, param, settings) else 0.0
        adamw_first_step(param, lr, weight_decay, settings["betas"], settings["eps"])
    elif mixer:
        sgd_first_step(param, lr, settings["mixer_momentum"], weight_decay,
                       settings["nesterov"] and settings["mixer_momentum"] > 0)
    else:
        sgd_first_step(param, lr, settings["momentum"], weight_decay, settings["nesterov"])


def decays(name, param, settings):
    """The reference's paramwise rule as samix states it: no decay on 1-D parameters (norms,
    biases) when no_decay_1d, nor on parameters whose last name component is listed."""
    if settings.get("no_decay_1d") and param.dim() <= 1:
        return False
    return name.split(".")[-1] not in settings.get("no_decay_names", [])


@torch.no_grad()
def adamw_first_step(param, lr, weight_decay, betas, eps):
    """torch.optim.AdamW's first update: p ← p·(1 − lr·wd); m = (1−β1)·g, v = (1−β2)·g²;
    p ← p − lr/(1−β1) · m / (√v/√(1−β2) + ε). Parameters without a gradient are left alone."""
    if param.grad is None:
        return
    beta1, beta2 = betas
    param.mul_(1.0 - lr * weight_decay)
    m = (1.0 - beta1) * param.grad
    second = (1.0 - beta2) * param.grad * param.grad
    denom = second.sqrt() / math.sqrt(1.0 - beta2) + eps
    param.sub_((lr / (1.0 - beta1)) * m / denom)
