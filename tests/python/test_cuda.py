"""The Python API on CUDA tensors: each policy gives on the GPU what it gives on the CPU for the same
seed, SAMix-P and the online Mixer run on the device with gradients reaching the Mixer. Skipped
(and reported as skipped) where torch sees no GPU; the device machine runs them (issue 29)."""

import pytest
import torch
from conftest import fashion
from test_policies import CASES

import samix

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("make,table", CASES, ids=[t["policy"] + str(i) for i, (_, t) in enumerate(CASES)])
def test_each_policy_mixes_on_the_gpu_as_on_the_cpu(make, table):
    x, y = fashion("train", 12)
    want = make(3).mix(x, y)
    xg, yg = x.cuda(), y.cuda()
    got = make(3).mix(xg, yg)
    assert got.images.device == xg.device and got.y_a.device == xg.device and got.lam.device == xg.device
    # The draws are samix's own, so labels and λ are equal; pixels up to the GPU's arithmetic.
    # SaliencyMix places its box at the saliency map's maximum, which the GPU's FFT may find at
    # a neighbouring pixel (a different box and λ): only its labels are compared.
    assert torch.equal(got.y_a.cpu(), want.y_a) and torch.equal(got.y_b.cpu(), want.y_b)
    if table["policy"] != "saliencymix":
        assert torch.equal(got.lam.cpu(), want.lam)
        assert torch.allclose(got.images.cpu(), want.images, atol=1e-5), table


@cuda
def test_samix_p_and_the_online_mixer_run_on_the_gpu(samix_run):
    mixer = samix.PretrainedMixer.load(samix_run, device="cuda", seed=0)
    x, y = fashion("train", 16)
    m = mixer.mix(x.cuda(), y.cuda())
    assert m.images.is_cuda and m.first_weight.is_cuda and m.images.shape == x.shape
    online = samix.Mixer(in_channels=16, scale=4, device="cuda")
    features = torch.randn(8, 16, 7, 7, device="cuda")
    masks = online(features, torch.randperm(8, device="cuda"), 0.3)
    assert masks.is_cuda and masks.shape == (8, 1, 28, 28)
    samix.MaskLoss(weight=1.0)(masks, 0.3).backward()
    assert all(p.grad is not None and p.grad.is_cuda and p.grad.abs().sum() > 0 for p in online.parameters())
