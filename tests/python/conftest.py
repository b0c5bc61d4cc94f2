"""Shared fixtures of the Python package's tests: the real datasets (as the Rust tests find them),
a Fashion-MNIST slice as tensors, and one tiny SAMix run made through the package's own CLI."""

import gzip
import os
import struct
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def datasets() -> Path:
    """`$SAMIX_TEST_DATA` (scripts/test.sh sets it when it downloaded them), else ../shared/datasets."""
    return Path(os.environ.get("SAMIX_TEST_DATA", ROOT.parent / "shared" / "datasets"))


def fashion_dir() -> Path:
    d = datasets() / "fashion-mnist"
    if not d.is_dir():
        pytest.exit(f"missing test dataset {d} (run scripts/test.sh, which downloads it)", returncode=2)
    return d


def _idx(path: Path) -> torch.Tensor:
    raw = gzip.decompress(path.read_bytes())
    (magic,) = struct.unpack(">I", raw[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4 : 4 + 4 * (magic & 0xFF)])
    return torch.frombuffer(bytearray(raw[4 + 4 * len(dims) :]), dtype=torch.uint8).reshape(dims)


def fashion(split: str, limit: int):
    """The first `limit` images of a Fashion-MNIST split, `N×1×28×28` in [0, 1], and their labels."""
    prefix = "train" if split == "train" else "t10k"
    d = fashion_dir()
    images = _idx(d / f"{prefix}-images-idx3-ubyte.gz")[:limit].unsqueeze(1).float() / 255.0
    labels = _idx(d / f"{prefix}-labels-idx1-ubyte.gz")[:limit].long()
    return images, labels


TINY_SAMIX = """
seed = 7
[data]
dataset = "fashion_mnist"
path = "{path}"
train_limit = 600
test_limit = 100
workers = 1
[model]
arch = "resnet18"
base_width = 8
blocks = [1, 1, 1, 1]
[optim]
lr = 0.05
[mix]
policy = "samix"
visual_every = 0
[train]
epochs = 1
batch_size = 50
threads = 1
"""


@pytest.fixture(scope="session")
def samix_run(tmp_path_factory) -> Path:
    """A finished one-epoch SAMix run (so it holds mixer.json), trained by `samix.cli`."""
    import samix

    tmp = tmp_path_factory.mktemp("run")
    config = tmp / "tiny_samix.toml"
    config.write_text(TINY_SAMIX.format(path=fashion_dir()))
    out = tmp / "samix"
    code = samix.cli(["--quiet", "train", "--config", str(config), "--out", str(out)])
    assert code == 0, f"samix train exited with {code}"
    return out
