"""The input policies from Python: the same output as the Rust library for the same draws,
the documented invariants, no copies, and clear errors for bad arguments."""

import json
import os
import subprocess
import threading

import pytest
import torch
from conftest import ROOT, fashion
from safetensors.torch import load_file, save_file

import samix

# Each Python policy and the [mix] table the Rust example is given for it.
CASES = [
    (lambda s: samix.MixUp(alpha=1.0, seed=s), {"policy": "mixup", "alpha": 1.0}),
    (lambda s: samix.MixUp(alpha=0.4, per_sample=True, seed=s), {"policy": "mixup", "alpha": 0.4, "per_sample": True}),
    (lambda s: samix.CutMix(alpha=1.0, seed=s), {"policy": "cutmix", "alpha": 1.0}),
    (lambda s: samix.CutMix(alpha=2.0, no_repeat=True, seed=s), {"policy": "cutmix", "alpha": 2.0, "no_repeat": True}),
    (lambda s: samix.ResizeMix(alpha=1.0, seed=s), {"policy": "resizemix", "alpha": 1.0}),
    (lambda s: samix.GridMix(alpha=0.2, seed=s), {"policy": "gridmix", "alpha": 0.2}),
    (lambda s: samix.SmoothMix(reference=True, seed=s), {"policy": "smoothmix", "alpha": 0.2, "reference": True}),
    (lambda s: samix.FMix(alpha=1.0, decay_power=2.5, seed=s), {"policy": "fmix", "alpha": 1.0, "decay_power": 2.5}),
    (lambda s: samix.SaliencyMix(alpha=1.0, seed=s), {"policy": "saliencymix", "alpha": 1.0}),
    (lambda s: samix.MixupCutmix(switch_prob=0.5, mode="elem", seed=s), {"policy": "mixup_cutmix", "switch_prob": 0.5, "mode": "elem"}),
]


def rust_example() -> str:
    exe = os.environ.get("SAMIX_MIX_EXAMPLE", str(ROOT / "target" / "debug" / "examples" / "mix_safetensors"))
    if not os.path.exists(exe):
        pytest.fail(f"{exe} is missing: `cargo test` (or `cargo build --example mix_safetensors`) builds it")
    return exe


@pytest.mark.parametrize("make,table", CASES, ids=[t["policy"] + str(i) for i, (_, t) in enumerate(CASES)])
def test_each_policy_gives_the_rust_librarys_output_for_the_same_seed(make, table, tmp_path):
    x, y = fashion("train", 12)
    save_file({"images": x.contiguous(), "labels": y.contiguous()}, str(tmp_path / "in.safetensors"))
    for seed in (0, 5):
        subprocess.run(
            [rust_example(), str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors"), str(seed), json.dumps(table)],
            check=True,
            timeout=300,
        )
        want = load_file(str(tmp_path / "out.safetensors"))
        got = make(seed).mix(x, y)
        assert torch.equal(got.images, want["images"])
        assert torch.equal(got.y_a, want["y_a"]) and torch.equal(got.y_b, want["y_b"])
        assert torch.equal(got.lam, want["lam"]) and got.lam.dtype == torch.float32
        assert (got.first_weight is None) == ("first_weight" not in want)
        if got.first_weight is not None:
            assert torch.equal(got.first_weight.expand_as(want["first_weight"]), want["first_weight"])
        assert (got.pairing is None) == ("pairing" not in want)
        if got.pairing is not None:
            assert torch.equal(got.pairing, want["pairing"])


def test_a_seeded_policy_repeats_and_draws_afresh_per_call():
    x, y = fashion("train", 16)
    a, b = samix.CutMix(alpha=1.0, seed=3), samix.CutMix(alpha=1.0, seed=3)
    first, again = a(x, y), b(x, y)
    assert all(torch.equal(p, q) for p, q in zip(first, again))
    assert not torch.equal(a(x, y).images, first.images)
    torch.manual_seed(11)
    c = samix.MixUp()(x, y)
    torch.manual_seed(11)
    assert torch.equal(samix.MixUp()(x, y).images, c.images)


def test_a_policy_made_on_one_thread_mixes_on_another():
    x, y = fashion("train", 8)
    policy, out = samix.CutMix(alpha=1.0, seed=4), []
    worker = threading.Thread(target=lambda: out.append(policy(x, y)))
    worker.start()
    worker.join(timeout=120)
    assert torch.equal(out[0].images, samix.CutMix(alpha=1.0, seed=4)(x, y).images)


def test_cutmix_labels_weigh_the_pixels_each_image_contributes():
    x, y = fashion("train", 16)
    m = samix.CutMix(alpha=1.0, seed=1).mix(x, y)
    area = m.first_weight.expand(16, 1, 28, 28).mean(dim=(1, 2, 3))
    assert torch.allclose(m.lam, area, atol=1e-6)
    assert set(m.first_weight.unique().tolist()) <= {0.0, 1.0}
    partner = x[m.pairing]
    assert torch.equal(m.images, x * m.first_weight + partner * (1 - m.first_weight))
    assert torch.equal(m.y_b, y[m.pairing]) and torch.equal(m.y_a, y)
    # The loss the labels describe, by hand.
    logits = torch.randn(16, 10)
    ce = torch.nn.functional.cross_entropy
    want = (m.lam * ce(logits, m.y_a, reduction="none") + (1 - m.lam) * ce(logits, m.y_b, reduction="none")).mean()
    assert torch.allclose(samix.mixup_cross_entropy(logits, m.y_a, m.y_b, m.lam), want, atol=1e-6)


def test_tensors_cross_without_a_copy():
    x, y = fashion("train", 8)
    out = samix.Policy("none", {})(x, y)
    assert out.images.data_ptr() == x.data_ptr() and out.y_a.data_ptr() == y.data_ptr()
    # In place through samix's result is in place on the caller's tensor.
    out.images.mul_(0)
    assert x.abs().sum() == 0


def test_bad_arguments_raise_one_clear_error():
    x, y = fashion("train", 8)
    with pytest.raises(ValueError, match=r"^config key `mix.alpha`: must be a positive number"):
        samix.MixUp(alpha=-1.0)
    with pytest.raises(TypeError, match=r"^alpha: expected a number, got str"):
        samix.CutMix(alpha="1")
    with pytest.raises(ValueError, match=r"^alpha: expected a finite number, got nan"):
        samix.CutMix(alpha=float("nan"))
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'alfa'"):
        samix.CutMix(alfa=1.0)
    with pytest.raises(ValueError, match=r"^mode: 'pixel' is not one of"):
        samix.MixupCutmix(mode="pixel")
    with pytest.raises(ValueError, match=r"^config key `mix`: unknown variant `cutmixx`"):
        samix.Policy("cutmixx", {"alpha": 1.0})
    with pytest.raises(ValueError, match=r"^config key `mix`: unknown field `alfa`"):
        samix.Policy("cutmix", {"alfa": 1.0})
    policy = samix.CutMix(alpha=1.0, seed=0)
    with pytest.raises(ValueError, match=r"^x: expected N×C×H×W, got shape \[8, 28, 28\]"):
        policy(x[:, 0], y)
    with pytest.raises(TypeError, match=r"^y: expected int64 class indices, got Float"):
        policy(x, y.float())
    with pytest.raises(ValueError, match=r"^y: expected shape \[8\] \(one per sample\), got \[7\]"):
        policy(x, y[:7])
    with pytest.raises(TypeError, match=r"^x: expected a floating-point tensor"):
        policy((x * 255).to(torch.uint8), y)
    with pytest.raises(TypeError, match=r"expected a torch.Tensor, got"):
        policy(x.numpy(), y)
    with pytest.raises(ValueError, match=r"^x: a batch of 1 image\(s\) has nothing to mix with"):
        policy(x[:1], y[:1])
    with pytest.raises(ValueError, match=r"^config key `mix.policy`: trains a Mixer with the model"):
        samix.Policy("samix", {})
    with pytest.raises(ValueError, match=r"^invalid argument: device `tpu`"):
        samix.Policy("mixup", {"alpha": 1.0}, device="tpu")
