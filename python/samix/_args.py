"""Checks of Python arguments before they reach the extension: a wrong type is a TypeError, a
wrong value a ValueError, each naming the argument (the extension checks ranges with the same
messages as the command line)."""

from __future__ import annotations

import math
import numbers
import os
from typing import Optional, Union

import torch

Device = Union[str, torch.device]


def number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return float(value)


def whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__}")
    return value


def choice(name: str, value: object, choices: tuple) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def path(name: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path, got {type(value).__name__}")
    folder = os.fspath(value)
    if not os.path.exists(folder):
        raise FileNotFoundError(f"{name}: {folder} does not exist")
    return folder


def seed(value: Optional[int]) -> int:
    """The policy's stream: the given seed, else one drawn from torch's global generator (so
    `torch.manual_seed` makes a script's mixing reproducible)."""
    if value is None:
        return int(torch.randint(0, 2**62, ()).item())
    value = whole("seed", value)
    if not 0 <= value < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {value}")
    return value


def device(value: Device) -> str:
    if isinstance(value, torch.device):
        return value.type if value.index is None else f"{value.type}:{value.index}"
    if not isinstance(value, str):
        raise TypeError(f"device: expected a str or torch.device, got {type(value).__name__}")
    return value
