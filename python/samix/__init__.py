"""samix for PyTorch: mixup policies, SAMix-P and the online SAMix Mixer on torch tensors.

samix (a Rust library on libtorch) and PyTorch share one libtorch in this process, so tensors
cross between them without a copy and autograd runs through both::

    import samix
    x_mix, y_a, y_b, lam = samix.CutMix(alpha=1.0)(x, y)          # any input policy
    loss = samix.mixup_cross_entropy(model(x_mix), y_a, y_b, lam)

    policy = samix.PretrainedMixer.load("runs/cifar100_samix")     # SAMix-P, a frozen Mixer
    mixer = samix.Mixer(in_channels=256, scale=4)                  # the online Mixer to train
    run = samix.read_run("runs/cifar100_samix")                    # summary and metrics

The ``samix`` command this package installs is the samix command line (``samix --help``);
``samix.cli([...])`` runs it from Python.
"""

import subprocess
import sys

import torch  # noqa: F401  (loads the libtorch the extension links; must precede it)

from samix import _samix
from samix._samix import __version__
from samix.mixer import Mixer, MaskLoss, MixerLoss, PretrainedMixer, backbone_mask, mixup_cross_entropy
from samix.policies import (
    AttentiveMix,
    CutMix,
    FMix,
    GridMix,
    MixedBatch,
    MixResult,
    MixUp,
    MixupCutmix,
    Policy,
    ResizeMix,
    SaliencyMix,
    SmoothMix,
)
from samix.runs import Run, read_run


def cli(argv: "list[str]") -> int:
    """Runs the samix command line (``argv`` without the program name) and returns its exit code:
    ``samix.cli(["train", "--config", "configs/quickstart.toml"])``. It runs in a child process,
    as the ``samix`` command does, so its Ctrl-C handling and process settings stay out of this
    interpreter; its output goes to this process's stdout and stderr."""
    if isinstance(argv, str) or not all(isinstance(a, str) for a in argv):
        raise TypeError("argv: expected a list of strings")
    return subprocess.run([sys.executable, "-m", "samix", *argv]).returncode


__all__ = [
    "AttentiveMix",
    "CutMix",
    "FMix",
    "GridMix",
    "MaskLoss",
    "MixedBatch",
    "MixResult",
    "MixUp",
    "Mixer",
    "MixerLoss",
    "MixupCutmix",
    "Policy",
    "PretrainedMixer",
    "ResizeMix",
    "Run",
    "SaliencyMix",
    "SmoothMix",
    "__version__",
    "backbone_mask",
    "cli",
    "mixup_cross_entropy",
    "read_run",
]
