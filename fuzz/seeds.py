"""Writes the seed corpus of each fuzz target (valid inputs the fuzzer mutates) from the run
configs and slices of the real datasets. Usage: seeds.py CORPUS_DIR DATASETS_DIR CONFIGS_DIR"""
import gzip
import io
import json
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path


def write(corpus, target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def png(width, height, seed):
    """A minimal 8-bit RGB PNG."""
    rows = b"".join(b"\0" + bytes((x * 17 + y * 5 + seed) % 256 for x in range(width * 3)) for y in range(height))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg(width, height, seed, mode="RGB", **options):
    """A small JPEG written by the venv's Pillow (baseline unless `options` say otherwise)."""
    from PIL import Image

    im = Image.new("RGB", (width, height))
    im.putdata([((x * 17 + seed) % 256, (y * 29) % 256, (x * y * 3) % 256) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    im.convert(mode).save(out, "JPEG", **options)
    return out.getvalue()


def safetensors(tensors):
    """tensors: [(name, dtype, shape, bytes)]"""
    header, offset, body = {}, 0, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        body += data
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def main():
    corpus, datasets, configs = (Path(a) for a in sys.argv[1:4])

    for i, cfg in enumerate(sorted(configs.rglob("*.toml"))):
        write(corpus, "config", f"{i:02}", cfg.read_bytes() + b"\0optim.lr=0.05\ntrain.epochs=2\n")

    if not (datasets / "mnist").is_dir() or not (datasets / "cifar-100-binary.tar.gz").is_file():
        print(f"seeds.py: no datasets in {datasets}; the idx and cifar targets start from an empty corpus", file=sys.stderr)
        datasets = None
    if datasets:
        real_data_seeds(corpus, datasets)
    image_and_archive_seeds(corpus)
    checkpoint_file_seeds(corpus, Path(__file__).parent / "seeds")


def checkpoint_file_seeds(corpus, seeds):
    """Real files of a tiny run (fuzz/seeds/README.md): its state.json files behind the `state`
    target's steps per epoch and seed, its safetensors files as they are."""
    state = [("state_epoch.json", 60, 3), ("state_partial.json", 600, 3)]
    for name, iters, seed in state:
        write(corpus, "state", name, struct.pack("<HB", iters, seed) + (seeds / name).read_bytes())
    for name in ("model.safetensors", "optimizer.safetensors"):
        write(corpus, "safetensors", name, (seeds / name).read_bytes())


def real_data_seeds(corpus, datasets):
    mnist = datasets / "mnist"
    images = gzip.open(mnist / "t10k-images-idx3-ubyte.gz").read(16 + 2 * 784)
    labels = gzip.open(mnist / "t10k-labels-idx1-ubyte.gz").read(8 + 2)
    images = struct.pack(">IIII", 0x803, 2, 28, 28) + images[16:]
    labels = struct.pack(">II", 0x801, 2) + labels[8:]
    write(corpus, "idx", "images", b"\0" + struct.pack("<H", 2) + images)
    write(corpus, "idx", "labels", b"\1" + struct.pack("<H", 2) + labels)

    with tarfile.open(datasets / "cifar-100-binary.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("test.bin"))
        records = tar.extractfile(member).read(2 * 3074)
    write(corpus, "cifar", "records100", bytes([1, 2]) + records)
    write(corpus, "cifar", "records10", bytes([0, 2]) + b"".join(records[i * 3074 + 1:(i + 1) * 3074] for i in range(2)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-binary/test.bin")
        info.size = len(records)
        tar.addfile(info, io.BytesIO(records))
    write(corpus, "cifar", "archive", bytes([3, 2]) + buf.getvalue())


def image_and_archive_seeds(corpus):
    def entry(split, cls, name, kind, content):
        pick = split | (cls << 2) | (name << 4)
        return bytes([pick, kind]) + struct.pack("<H", len(content)) + content
    tree = b"".join(entry(s, c, n, 0, png(6, 5, s * 4 + c + n)) for s in (0, 1) for c in (0, 1) for n in (0, 3))
    write(corpus, "image_folder", "two_classes", tree)
    # JPEGs in train/ (classes a-c; names "1.jpg", "2.jpeg"): baseline 4:2:0, progressive, 4:4:4
    # and grey, which the training pipeline decodes in part (and DCT-downscaled: its crop is
    # 4 pixels); and CMYK, which it decodes whole.
    kinds = [{}, {"progressive": True}, {"subsampling": 0}, {"mode": "L"}, {"mode": "CMYK"}]
    tree = b"".join(entry(0, k % 3, 1 + k // 3, 0, jpeg(37, 29, k, **kw)) for k, kw in enumerate(kinds))
    write(corpus, "image_folder", "jpegs", tree)

    f32 = lambda n: struct.pack(f"<{n}f", *[0.5 * i for i in range(n)])
    good = [("conv.weight", "F32", [2, 1, 3, 3], f32(18)), ("fc.bias", "F32", [3], f32(3)),
            ("bn.num_batches_tracked", "I64", [], struct.pack("<q", 7))]
    def framed(model, state=b""):
        return struct.pack("<I", len(model)) + model + state
    write(corpus, "checkpoint", "good", framed(safetensors(good)))
    write(corpus, "checkpoint", "wide", framed(safetensors([("conv.weight", "F32", [2, 3, 3, 3], f32(54))] + good[1:])))
    partial = {"steps": 3, "loss_sum": 6.5, "mix_stream_pos": "48", "learner": {"sums": {"loss_mask": 0.25}, "steps": 3}}
    write(corpus, "checkpoint", "with_state", framed(safetensors(good), json.dumps(
        {"epoch": 2, "global_step": 8, "seed": 1, "samix_version": "0.1.0", "files": {"model.safetensors": "00"},
         "partial": partial}).encode()))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "n01\nn02\n")
        z.writestr("tiny-imagenet-200/train/n01/images/n01_0.JPEG", png(4, 4, 1))
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.JPEG\tn01\t0\t0\t4\t4\n")
    write(corpus, "extract", "tiny", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../escape.txt", "outside")
        z.writestr("tiny-imagenet-200/ok.txt", "inside")
    write(corpus, "extract", "escape", buf.getvalue())


if __name__ == "__main__":
    main()
