"""SAMix-P from PyTorch: a finished samix run's frozen Mixer mixing batches in a plain PyTorch
loop, which learns on a real data slice; and its refusals."""

import pytest
import torch
from conftest import fashion

import samix


def classifier():
    """A small CNN for 28-pixel images: two conv-BN-ReLU-pool stages and a linear layer."""
    block = lambda cin, cout: [torch.nn.Conv2d(cin, cout, 3, 1, 1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]  # noqa: E731
    return torch.nn.Sequential(*block(1, 32), *block(32, 64), torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 10))


def normalise(x, mixer):
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in mixer.normalization)
    return (x - mean) / std


def test_samix_p_mixes_as_it_reports_and_stays_out_of_autograd(samix_run):
    mixer = samix.PretrainedMixer.load(samix_run, seed=0)
    assert (mixer.image_size, mixer.in_channels) == (28, 1)
    x, y = fashion("train", 32)
    x = normalise(x, mixer).requires_grad_()
    m = mixer.mix(x, y)
    # The images carry the batch's graph; the frozen Mixer's masks carry none.
    assert m.first_weight.shape == (32, 1, 28, 28) and m.images.requires_grad and not m.first_weight.requires_grad
    partner = x[m.pairing]
    assert torch.allclose(m.images, x * m.first_weight + partner * (1 - m.first_weight), atol=1e-6)
    assert torch.equal(m.y_b, y[m.pairing]) and m.lam.shape == (32,)
    again = samix.PretrainedMixer.load(samix_run, seed=0)(x, y)
    assert torch.equal(again.images, m.images)
    with pytest.raises(ValueError, match=r"^config key `mix.policy`: use samix.PretrainedMixer.load"):
        samix.Policy("samix_p", {"mixer": str(samix_run)})


def test_a_pytorch_loop_with_samix_p_learns(samix_run):
    torch.manual_seed(0)
    # The fixture's Mixer saw one epoch of 600 images, so its masks' areas are not yet λ's (on
    # this slice: 37% test accuracy after this loop, against 63% with MixUp); the area adjustment
    # on every mask (mask_adjust=1) makes the labels right, as it would for a run's weak Mixer.
    mixer = samix.PretrainedMixer.load(samix_run, seed=1, mask_adjust=1.0)
    x, y = fashion("train", 1000)
    x = normalise(x, mixer)
    x_test, y_test = fashion("test", 500)
    x_test = normalise(x_test, mixer)
    model = classifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for epoch in range(3):
        order = torch.randperm(1000)
        for i in range(0, 1000, 50):
            batch = order[i : i + 50]
            x_mix, y_a, y_b, lam = mixer(x[batch], y[batch])
            loss = samix.mixup_cross_entropy(model(x_mix), y_a, y_b, lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.5, accuracy  # 10 classes
    # The mixed-label loss stays well above 0 by construction; it must still fall.
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.15, losses


def test_samix_p_refuses_what_it_cannot_mix(samix_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="run_or_artifact_dir: .*missing does not exist"):
        samix.PretrainedMixer.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="no mixer.json here"):
        samix.PretrainedMixer.load(tmp_path)
    mixer = samix.PretrainedMixer.load(samix_run)
    x, y = fashion("train", 4)
    with pytest.raises(ValueError, match=r"^config key `mix.mixer`: the pre-trained Mixer reads 1-channel 28×28 images; this data has 1-channel 32×32"):
        mixer(torch.nn.functional.pad(x, (2, 2, 2, 2)), y)
    with pytest.raises(ValueError, match=r"^config key `mix.alpha`"):
        samix.PretrainedMixer.load(samix_run, alpha=0.0)
