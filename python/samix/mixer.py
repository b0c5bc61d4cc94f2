"""The SAMix Mixer for PyTorch loops: ``PretrainedMixer`` (SAMix-P: a finished samix run's frozen
Mixer as a policy) and ``Mixer`` (the online Mixer your loop trains), with its losses.

The online Mixer's variables are torch tensors that samix and PyTorch share: hand
``mixer.parameters()`` to any ``torch.optim`` optimiser, call ``mixer(features, perm, lam)`` on
your network's stage features, and ``backward()`` through its mask and losses from Python.
examples/pytorch_online_samix.py puts the whole step (docs/ALGORITHM.md §3–§4) into a plain loop.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch

from samix import _args, _samix
from samix.policies import MixedBatch, MixResult

Lambda = Union[float, torch.Tensor]


class PretrainedMixer:
    """SAMix-P: the frozen encoder and Mixer of a finished samix run (a SAMix or SAMix-SSL run
    folder, or a folder holding ``mixer.json`` and ``mixer.safetensors``), used as an input
    policy: ``x_mix, y_a, y_b, lam = mixer(x, y)``. Images must be normalised with
    ``mixer.normalization`` and have the size it was trained on; the batch must be on ``device``.
    """

    def __init__(self, inner: "_samix.PretrainedMixer"):
        self._inner = inner

    @classmethod
    def load(
        cls,
        run_or_artifact_dir: Union[str, os.PathLike],
        *,
        device: _args.Device = "cpu",
        alpha: float = 2.0,
        mask_adjust: float = 0.0,
        lam_margin: float = 0.08,
        reference_route: bool = False,
        seed: Optional[int] = None,
    ) -> "PretrainedMixer":
        """Load onto ``device``. ``alpha``: λ ~ Beta(α, α); ``mask_adjust``: the share of masks
        rescaled to cover exactly λ; ``lam_margin``: plain MixUp where λ is this close to 0 or
        1; ``reference_route``: BatchNorm and dropout of the frozen parts in train mode, as
        OpenMixup's frozen route runs them (that route also adds a clean-image cross-entropy to
        the loss, which is the caller's to add here; samix's ``samix_p`` keys,
        docs/ALGORITHM.md §7)."""
        table = {
            "mixer": _args.path("run_or_artifact_dir", run_or_artifact_dir),
            "alpha": _args.number("alpha", alpha),
            "mask_adjust": _args.number("mask_adjust", mask_adjust),
            "lam_margin": _args.number("lam_margin", lam_margin),
            "reference_route": _args.flag("reference_route", reference_route),
        }
        return cls(_samix.PretrainedMixer(json.dumps(table), _args.seed(seed), _args.device(device)))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixResult:
        images, y_a, y_b, lam, _, _ = self._inner.mix(x, y)
        return MixResult(images, y_a, y_b, lam)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """As calling it, with the per-pixel weights and the pairing."""
        return MixedBatch(*self._inner.mix(x, y))

    @property
    def normalization(self) -> Tuple[List[float], List[float]]:
        """The per-channel (mean, std) the encoder was trained with."""
        return self._inner.normalization

    @property
    def image_size(self) -> int:
        return self._inner.image_size

    @property
    def in_channels(self) -> int:
        return self._inner.in_channels


class Mixer:
    """The online Mixer (SAMix's, or AutoMix's with ``variant="automix"``) reading stage features
    of ``in_channels`` channels whose side is the image side ÷ ``scale``; the other keys are
    ``[mix.mixer]``'s. Initialised from torch's global generator, on ``device``.

    ``mixer(features, perm, lam)`` returns ``s``, the partner's weight per pixel (``N×1×H×W``,
    in [0, 1]): mix with ``x * (1 - s) + x[perm] * s``. Gradients reach the Mixer's parameters
    (and ``features``, unless detached: SAMix reads them from the EMA critic without grad).
    """

    def __init__(
        self,
        in_channels: int,
        scale: int,
        *,
        variant: str = "samix",
        reduction: int = 2,
        lam_mul_k: float = 0.25,
        upsample: Optional[str] = None,
        value_dropout: float = 0.0,
        device: _args.Device = "cpu",
    ):
        table = {
            "variant": _args.choice("variant", variant, ("samix", "automix")),
            "reduction": _args.whole("reduction", reduction),
            "lam_mul_k": _args.number("lam_mul_k", lam_mul_k),
            "value_dropout": _args.number("value_dropout", value_dropout),
        }
        if upsample is not None:
            table["upsample"] = _args.choice("upsample", upsample, ("bilinear", "nearest"))
        in_channels, scale = _args.whole("in_channels", in_channels), _args.whole("scale", scale)
        self._inner = _samix.Mixer(json.dumps(table), in_channels, scale, _args.device(device))

    def __call__(self, features: torch.Tensor, perm: torch.Tensor, lam: Lambda) -> torch.Tensor:
        """``s`` for float32 ``features`` (``N×in_channels×h×w``), the pairing ``perm`` (N int64)
        and one λ (a float or a 0-dim tensor)."""
        return self._inner.mask(features, perm, _lambda(lam, features))

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Every variable by name (parameters and BatchNorm statistics), the Mixer's own tensors."""
        return self._inner.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self._inner.load_state_dict(dict(state))

    def named_parameters(self) -> Iterator[Tuple[str, torch.Tensor]]:
        return ((k, v) for k, v in self.state_dict().items() if v.requires_grad)

    def parameters(self) -> Iterator[torch.Tensor]:
        """The trainable tensors, for a ``torch.optim`` optimiser (updates in place are the Mixer's)."""
        return (v for _, v in self.named_parameters())

    @property
    def training(self) -> bool:
        return self._inner.training

    def train(self, mode: bool = True) -> "Mixer":
        """BatchNorm on batch statistics and dropout on (``mode=False``: as ``eval()``)."""
        self._inner.training = _args.flag("mode", mode)
        return self

    def eval(self) -> "Mixer":
        return self.train(False)


class MaskLoss:
    """The Mixer's mask loss times ``weight``: ``mode`` "l1_variance" (SAMix: the area's distance
    from λ beyond ``margin``, minus twice the mask's variance), "l1" (AutoMix), "l2_variance" or
    "sparsity"; per batch, or per sample with ``per_sample``. ``loss(s, lam)``."""

    def __init__(self, mode: str = "l1_variance", *, margin: float = 0.1, weight: float = 0.1, per_sample: bool = False):
        table = {
            "mode": _args.choice("mode", mode, ("l1", "l1_variance", "l2_variance", "sparsity")),
            "margin": _args.number("margin", margin),
            "weight": _args.number("weight", weight),
            "per_sample": _args.flag("per_sample", per_sample),
        }
        self._inner = _samix.MaskLoss(json.dumps(table))

    def __call__(self, s: torch.Tensor, lam: Lambda) -> torch.Tensor:
        return self._inner(s, _lambda(lam, s))


class MixerLoss:
    """The Mixer's classification loss on the EMA critic's logits of the Mixer-branch images:
    "pair_local_global" (SAMix: the pair's two-way local term + ``eta`` · mixup CE), "soft_ce"
    (AutoMix), "bce_neg" or "decoupled", each but "soft_ce" weighted by ``eta`` (default 0.5).
    ``loss(logits, y_a, y_b, lam)``, λ per sample."""

    def __init__(self, kind: str = "pair_local_global", *, eta: Optional[float] = None):
        table: Dict[str, object] = {"kind": _args.choice("kind", kind, ("soft_ce", "pair_local_global", "bce_neg", "decoupled"))}
        if kind == "soft_ce" and eta is not None:
            raise ValueError("eta: soft_ce has no weight η")
        if kind != "soft_ce":
            table["eta"] = 0.5 if eta is None else _args.number("eta", eta)
        self._inner = _samix.MixerLoss(json.dumps(table))

    def __call__(self, logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return self._inner(logits, y_a, y_b, lam)


def mixup_cross_entropy(
    logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: torch.Tensor, *, smoothing: float = 0.0
) -> torch.Tensor:
    """``mean(λ·CE(logits, y_a) + (1−λ)·CE(logits, y_b))`` with label smoothing, λ per sample."""
    return _samix.mixup_cross_entropy(logits, y_a, y_b, lam, _args.number("smoothing", smoothing))


def backbone_mask(s: torch.Tensor, lam: Lambda, *, adjust: Optional[torch.Tensor] = None, lam_margin: float = 0.08) -> torch.Tensor:
    """SAMix's post-processing of the (detached) mask that mixes the classifier's images: the area
    rescaled to λ for the samples whose ``adjust`` flag (N values, 1 or True = adjust) is set,
    plain MixUp where λ is within ``lam_margin`` (< 0.5) of 0 or 1."""
    if adjust is not None:
        if not isinstance(adjust, torch.Tensor):
            raise TypeError(f"adjust: expected a tensor of N flags, got {type(adjust).__name__}")
        adjust = adjust.reshape(-1, 1, 1, 1).to(torch.float32)
    return _samix.backbone_mask(s, _lambda(lam, s), adjust, _args.number("lam_margin", lam_margin))


def _lambda(lam: Lambda, beside: torch.Tensor) -> torch.Tensor:
    """λ as the 0-dim float tensor the extension takes, on the device of ``beside``."""
    if not isinstance(beside, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(beside).__name__}")
    if isinstance(lam, torch.Tensor):
        return lam
    return torch.tensor(_args.number("lam", lam), dtype=torch.float32, device=beside.device)
