"""samix's input mixing policies as callables on a batch of torch tensors.

``x_mix, y_a, y_b, lam = samix.CutMix(alpha=1.0)(x, y)``: images ``N×C×H×W`` (any float dtype,
CPU or CUDA), labels ``N`` int64 on the same device; ``lam`` is the weight of ``y_a`` per sample.
Train with ``samix.mixup_cross_entropy(logits, y_a, y_b, lam)``. The mixed images are computed
by samix on the batch's device (no copy in or out); the policy's scalars (λ, boxes, the pairing)
come from its own stream, seeded by ``seed`` (default: drawn from torch's global generator, so
``torch.manual_seed`` makes a script reproducible). Each class is the ``[mix]`` table of the same
name in a samix config, with the same keys, defaults and checks (docs/POLICIES.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional

import torch

from samix import _args, _samix


class MixResult(NamedTuple):
    """A mixed batch: images, the two label sets and each sample's weight of ``y_a``."""

    images: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: torch.Tensor


@dataclass
class MixedBatch:
    """A mixed batch with how it was made: ``first_weight`` is the first image's weight per
    pixel (``N×1×H×W``; None for global blends such as MixUp), ``pairing[n]`` the sample that
    sample n was mixed with (None when nothing was mixed)."""

    images: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: torch.Tensor
    first_weight: Optional[torch.Tensor]
    pairing: Optional[torch.Tensor]

    @property
    def mask(self) -> Optional[torch.Tensor]:
        """The partner image's weight per pixel, ``1 − first_weight`` (the paper's ``s``)."""
        return None if self.first_weight is None else 1.0 - self.first_weight


class Policy:
    """A policy from its ``[mix]`` table: ``Policy("cutmix", {"alpha": 1.0})``. The named
    classes below are the same with keyword arguments."""

    def __init__(self, policy: str, table: Dict[str, Any], *, seed: Optional[int] = None, device: _args.Device = "cpu"):
        if not isinstance(policy, str):
            raise TypeError(f"policy: expected a string, got {type(policy).__name__}")
        self._inner = _samix.Policy(json.dumps({"policy": policy, **table}), _args.seed(seed), _args.device(device))

    @property
    def name(self) -> str:
        return self._inner.name

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixResult:
        images, y_a, y_b, lam, _, _ = self._inner.mix(x, y)
        return MixResult(images, y_a, y_b, lam)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """As calling the policy, with the per-pixel weights and the pairing."""
        return MixedBatch(*self._inner.mix(x, y))

    def __repr__(self) -> str:
        return f"samix.{type(self).__name__}({self.name})"


class MixUp(Policy):
    """MixUp: ``λ·x + (1−λ)·x[perm]``, λ ~ Beta(α, α) per batch (``per_sample``: per sample)."""

    def __init__(self, alpha: float = 1.0, *, per_sample: bool = False, seed: Optional[int] = None):
        table = {"alpha": _args.number("alpha", alpha), "per_sample": _args.flag("per_sample", per_sample)}
        super().__init__("mixup", table, seed=seed)


class CutMix(Policy):
    """CutMix: one box of the partner pasted per batch, λ = the first image's share of pixels.
    ``no_repeat``: redraw a pairing that pairs an image with itself (up to 10 times)."""

    def __init__(self, alpha: float = 0.2, *, no_repeat: bool = False, seed: Optional[int] = None):
        table = {"alpha": _args.number("alpha", alpha), "no_repeat": _args.flag("no_repeat", no_repeat)}
        super().__init__("cutmix", table, seed=seed)


class ResizeMix(Policy):
    """ResizeMix: the partner shrunk and pasted into a random box."""

    def __init__(self, alpha: float = 1.0, *, seed: Optional[int] = None):
        super().__init__("resizemix", {"alpha": _args.number("alpha", alpha)}, seed=seed)


class GridMix(Policy):
    """GridMix: a grid of cells from the partner (``reference``: OpenMixup's grid)."""

    def __init__(self, alpha: float = 0.2, *, reference: bool = False, seed: Optional[int] = None):
        table = {"alpha": _args.number("alpha", alpha), "reference": _args.flag("reference", reference)}
        super().__init__("gridmix", table, seed=seed)


class SmoothMix(Policy):
    """SmoothMix: a soft Gaussian blob of the partner (``reference``: OpenMixup's blob); the blob's
    size sets λ, so ``alpha`` is only checked."""

    def __init__(self, alpha: float = 0.2, *, reference: bool = False, seed: Optional[int] = None):
        table = {"alpha": _args.number("alpha", alpha), "reference": _args.flag("reference", reference)}
        super().__init__("smoothmix", table, seed=seed)


class FMix(Policy):
    """FMix: a binary mask from thresholded low-frequency Fourier noise of spectrum decay
    ``decay_power``; ``no_repeat`` as CutMix's."""

    def __init__(self, alpha: float = 0.2, *, decay_power: float = 3.0, no_repeat: bool = False, seed: Optional[int] = None):
        table = {
            "alpha": _args.number("alpha", alpha),
            "decay_power": _args.number("decay_power", decay_power),
            "no_repeat": _args.flag("no_repeat", no_repeat),
        }
        super().__init__("fmix", table, seed=seed)


class SaliencyMix(Policy):
    """SaliencyMix: the CutMix box centred on the partner's most salient pixel."""

    def __init__(self, alpha: float = 0.2, *, seed: Optional[int] = None):
        super().__init__("saliencymix", {"alpha": _args.number("alpha", alpha)}, seed=seed)


class MixupCutmix(Policy):
    """timm's switch: MixUp (``mixup_alpha``) or CutMix (``cutmix_alpha``) with probability
    ``switch_prob`` of CutMix, applied with probability ``prob``; λ per ``mode``
    ("batch", "pair" or "elem"). An α of 0 turns that half off."""

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        *,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        seed: Optional[int] = None,
    ):
        table = {
            "mixup_alpha": _args.number("mixup_alpha", mixup_alpha),
            "cutmix_alpha": _args.number("cutmix_alpha", cutmix_alpha),
            "prob": _args.number("prob", prob),
            "switch_prob": _args.number("switch_prob", switch_prob),
            "mode": _args.choice("mode", mode, ("batch", "pair", "elem")),
        }
        super().__init__("mixup_cutmix", table, seed=seed)


class AttentiveMix(Policy):
    """AttentiveMix+: the partner's highest-scoring grid cells, scored by a frozen classifier
    (``checkpoint``: a samix run or checkpoint folder, or a samix weights file) kept on
    ``device``, where the batch must be too (docs/POLICIES.md)."""

    def __init__(
        self,
        checkpoint: str,
        alpha: float = 2.0,
        *,
        upsample_to: Optional[int] = None,
        scorer_train_bn: bool = False,
        device: _args.Device = "cpu",
        seed: Optional[int] = None,
    ):
        table: Dict[str, Any] = {
            "alpha": _args.number("alpha", alpha),
            "checkpoint": _args.path("checkpoint", checkpoint),
            "scorer_train_bn": _args.flag("scorer_train_bn", scorer_train_bn),
        }
        if upsample_to is not None:
            table["upsample_to"] = _args.whole("upsample_to", upsample_to)
        super().__init__("attentivemix", table, seed=seed, device=device)
