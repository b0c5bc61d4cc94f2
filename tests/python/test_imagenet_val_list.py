"""scripts/imagenet_val_list.py on a small devkit written like the real one (a synsets struct array
in meta.mat whose grouping synsets have children; the ground truth numbering classes by
ILSVRC2012_ID, not in WordNet-ID order): the list it writes names each image's class, and samix
reads the resulting ImageNet folder with those labels."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from conftest import ROOT
from PIL import Image

SCRIPT = ROOT / "scripts" / "imagenet_val_list.py"
# (ILSVRC2012_ID, WNID, num_children): IDs in an order other than the WordNet IDs', and a parent.
SYNSETS = [(1, "n03000003", 0), (2, "n01000001", 0), (3, "n02000002", 0), (4, "n00000009", 3)]
TRUTH = [3, 1, 2, 1, 3]


def write_devkit(devkit):
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height", "num_train_images"]
    synsets = np.empty((len(SYNSETS), 1), dtype=[(f, "O") for f in fields])
    for i, (ident, wnid, children) in enumerate(SYNSETS):
        kids = np.array([[1.0, 2.0, 3.0]]) if children else np.zeros((1, 0))
        values = [np.array([[float(ident)]]), wnid, wnid, "", np.array([[float(children)]]), kids, np.array([[0.0]]), np.array([[1300.0]])]
        synsets[i, 0] = tuple(values)
    (devkit / "data").mkdir(parents=True)
    scipy.io.savemat(str(devkit / "data" / "meta.mat"), {"synsets": synsets})
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{t}\n" for t in TRUTH))


def test_the_devkits_ground_truth_becomes_a_list_samix_reads(tmp_path):
    write_devkit(tmp_path / "devkit")
    root = tmp_path / "imagenet"
    wnid_of = {ident: wnid for ident, wnid, children in SYNSETS if children == 0}
    for wnid in wnid_of.values():
        (root / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (20, 16), (40, 80, 120)).save(root / "train" / wnid / f"{wnid}_1.JPEG")
    (root / "val").mkdir()
    for n in range(1, len(TRUTH) + 1):
        Image.new("RGB", (20, 16), (n * 40, 0, 0)).save(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "devkit"), str(root / "val.txt")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    want = [f"ILSVRC2012_val_{n:08d}.JPEG {wnid_of[t]}" for n, t in enumerate(TRUTH, 1)]
    assert (root / "val.txt").read_text().splitlines() == want
    assert "5 images in 3 classes" in done.stdout
    verify = subprocess.run([sys.executable, "-m", "samix", "data", "verify", str(root)], capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stderr
    assert "imagenet (3 classes, 3 train / 5 test images)" in verify.stdout + verify.stderr
    # A class the devkit does not have is named with its line.
    (tmp_path / "devkit" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n4\n")
    bad = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "devkit"), str(tmp_path / "x.txt")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "line 2: `4`" in bad.stderr and not (tmp_path / "x.txt").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
