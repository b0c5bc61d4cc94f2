"""Writes samix's ImageNet validation list from the ILSVRC2012 devkit.

The devkit's ground-truth file gives each of the 50,000 validation images (line i: image
ILSVRC2012_val_<i, 8 digits>.JPEG) a class as an ILSVRC2012_ID, and only the devkit's meta.mat
(a MATLAB file) maps those IDs to WordNet IDs. samix reads a flat val/ folder with a
`<file> <wnid>` list beside it (README, "Datasets"), so this converts one into the other. It
reads meta.mat with scipy; samix itself has no MATLAB reader (docs/DESIGN.md says why).

    python scripts/imagenet_val_list.py DEVKIT_DIR ROOT/val.txt

DEVKIT_DIR is the extracted ILSVRC2012_devkit_t12, holding data/meta.mat and
data/ILSVRC2012_validation_ground_truth.txt. The list is written whole or not at all.
"""

import sys
from pathlib import Path


def leaf_wnids(meta_mat):
    """ILSVRC2012_ID -> WNID of meta.mat's leaf synsets (the 1,000 classes; the others group them)."""
    import scipy.io

    synsets = scipy.io.loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    fields = synsets.dtype.names
    wnids = {}
    for synset in synsets:
        row = dict(zip(fields, synset))
        if int(row["num_children"]) == 0:
            wnids[int(row["ILSVRC2012_ID"])] = str(row["WNID"])
    return wnids


def val_list(truth, wnids):
    """The list's lines, one per line of the ground-truth file, in its order."""
    lines = []
    for number, text in enumerate(truth.read_text().splitlines(), 1):
        try:
            wnid = wnids[int(text.strip())]
        except (ValueError, KeyError):
            sys.exit(f"{truth}: line {number}: `{text.strip()}` is not the ILSVRC2012_ID of a class in meta.mat")
        lines.append(f"ILSVRC2012_val_{number:08d}.JPEG {wnid}\n")
    return lines


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: python scripts/imagenet_val_list.py DEVKIT_DIR OUT_LIST")
    devkit, out = Path(argv[1]), Path(argv[2])
    meta, truth = devkit / "data" / "meta.mat", devkit / "data" / "ILSVRC2012_validation_ground_truth.txt"
    for path in (meta, truth):
        if not path.is_file():
            sys.exit(f"{path}: not found (DEVKIT_DIR is the extracted ILSVRC2012_devkit_t12)")
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        sys.exit("reading meta.mat needs scipy: pip install scipy")
    lines = val_list(truth, leaf_wnids(meta))
    partial = out.with_name(out.name + ".partial")
    partial.write_text("".join(lines))
    partial.replace(out)
    classes = len({line.split()[1] for line in lines})
    print(f"{out}: {len(lines)} images in {classes} classes")


if __name__ == "__main__":
    main(sys.argv)
