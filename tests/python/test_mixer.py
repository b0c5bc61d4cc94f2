"""The online Mixer driven from PyTorch: parameters a torch optimiser owns, gradients from a Python
backward() reaching the Mixer and the user's model where SAMix's step routes them and nowhere
else (docs/ALGORITHM.md §3–§4), the losses against hand computation, state round trips."""

import copy

import pytest
import torch
from conftest import fashion

import samix


class Net(torch.nn.Module):
    """A small CNN whose second stage (16 channels, 7×7 for 28-pixel images) the Mixer reads."""

    def __init__(self):
        super().__init__()
        self.stage1 = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.stage2 = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x, keep=False):
        f = self.stage2(self.stage1(x))
        logits = self.fc(f.mean(dim=(2, 3)))
        return (logits, f) if keep else logits


def grads(params):
    return [p.grad for p in params]


def test_gradients_reach_the_mixer_and_the_model_where_samix_routes_them():
    torch.manual_seed(0)
    x, y = fashion("train", 16)
    model = Net()
    critic = copy.deepcopy(model).requires_grad_(False)
    mixer = samix.Mixer(in_channels=16, scale=4)
    params = list(mixer.parameters())
    assert sorted(n for n, _ in mixer.named_parameters()) == sorted(
        ["key.bias", "key.weight", "query.bias", "query.weight", "value.bn.bias", "value.bn.weight", "value.conv1.weight", "value.conv2.weight"]
    )
    with torch.no_grad():
        _, f = critic(x, keep=True)
    perm, lam = torch.randperm(16), 0.4

    # The Mixer branch: its mask, mixed images through the frozen critic, the Mixer's two losses.
    s = mixer(f, perm, lam)
    assert s.shape == (16, 1, 28, 28) and s.requires_grad
    x_mb = x * (1 - s) + x[perm] * s
    lam_n = torch.full((16,), lam)
    loss = samix.MaskLoss()(s, lam) + samix.MixerLoss()(critic(x_mb), y, y[perm], lam_n)
    loss.backward()
    assert all(g is not None and g.abs().sum() > 0 for g in grads(params))
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.grad is None for p in model.parameters())

    # The backbone branch: the mask without grad, post-processed; only the model learns from it.
    for p in params:
        p.grad = None
    with torch.no_grad():
        s_bb = samix.backbone_mask(mixer(f, perm, lam), lam)
    x_bb = x * (1 - s_bb) + x[perm] * s_bb
    samix.mixup_cross_entropy(model(x_bb), y, y[perm], lam_n).backward()
    assert all(p.grad is None for p in params)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_features_with_grad_pass_it_on_to_the_network_that_made_them():
    torch.manual_seed(0)
    x, _ = fashion("train", 8)
    model, mixer = Net(), samix.Mixer(in_channels=16, scale=4)
    _, f = model(x, keep=True)
    mixer(f, torch.randperm(8), 0.5).sum().backward()
    assert model.stage1[0].weight.grad.abs().sum() > 0
    assert model.fc.weight.grad is None


def test_a_torch_optimiser_updates_the_mixers_own_tensors():
    torch.manual_seed(0)
    x, _ = fashion("train", 8)
    f = Net()(x, keep=True)[1].detach()
    mixer = samix.Mixer(in_channels=16, scale=4).eval()
    perm = torch.randperm(8)
    before = mixer(f, perm, 0.3).detach()
    pointers = {k: v.data_ptr() for k, v in mixer.state_dict().items()}
    opt = torch.optim.SGD(mixer.parameters(), lr=10.0)
    mixer.train()
    samix.MaskLoss(weight=1.0)(mixer(f, perm, 0.3), 0.3).backward()
    opt.step()
    assert {k: v.data_ptr() for k, v in mixer.state_dict().items()} == pointers
    assert not torch.equal(mixer.eval()(f, perm, 0.3), before)


def test_state_dict_round_trip_and_mismatches():
    torch.manual_seed(1)
    a, b = samix.Mixer(in_channels=16, scale=4), samix.Mixer(in_channels=16, scale=4)
    f = torch.randn(4, 16, 7, 7)
    perm = torch.tensor([1, 0, 3, 2])
    a.eval(), b.eval()
    assert not torch.equal(a(f, perm, 0.5), b(f, perm, 0.5))
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    assert torch.equal(a(f, perm, 0.5), b(f, perm, 0.5))
    state = a.state_dict()
    with pytest.raises(KeyError, match="nope: not a variable of this Mixer"):
        b.load_state_dict({**state, "nope": torch.zeros(1)})
    del state["query.weight"]
    with pytest.raises(KeyError, match="query.weight: missing from the state"):
        b.load_state_dict(state)
    with pytest.raises(ValueError, match=r"^features: 8 channels, the Mixer reads 16"):
        a(torch.randn(4, 8, 7, 7), perm, 0.5)
    with pytest.raises(ValueError, match=r"^lam: expected one λ as a 0-dim float tensor"):
        a(f, perm, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match=r"^config key `mix.mixer.reduction`"):
        samix.Mixer(in_channels=16, scale=4, reduction=0)


@pytest.mark.parametrize("mode,margin,per_sample", [("l1_variance", 0.1, False), ("l1", 0.05, True), ("l2_variance", 0.1, True)])
def test_mask_loss_equals_the_formula(mode, margin, per_sample):
    torch.manual_seed(2)
    s, lam = torch.rand(6, 1, 8, 8), 0.3
    rows = s.reshape(6, -1) if per_sample else s.reshape(1, -1)
    gap = 1 - rows.mean(1) - lam
    var = rows.var(1, unbiased=False)
    per_row = {
        "l1_variance": (gap.abs() - margin).relu() - 2 * var,
        "l1": (gap.abs() - margin).relu(),
        "l2_variance": (gap.square() - margin**2).relu() - 2 * var,
    }[mode]
    got = samix.MaskLoss(mode, margin=margin, weight=0.25, per_sample=per_sample)(s, lam)
    assert torch.allclose(got, per_row.mean() * 0.25, atol=1e-6)


def test_mixer_loss_is_the_pairs_local_term_plus_eta_global():
    torch.manual_seed(3)
    z, y_a, y_b = torch.randn(5, 10), torch.tensor([0, 1, 2, 3, 4]), torch.tensor([5, 1, 7, 8, 9])
    lam = torch.rand(5)
    d = z.gather(1, y_a[:, None])[:, 0] - z.gather(1, y_b[:, None])[:, 0]
    local = -(lam * torch.nn.functional.logsigmoid(d) + (1 - lam) * torch.nn.functional.logsigmoid(-d))
    local = local.masked_fill(y_a == y_b, 0.0).mean()
    ce = torch.nn.functional.cross_entropy
    glob = (lam * ce(z, y_a, reduction="none") + (1 - lam) * ce(z, y_b, reduction="none")).mean()
    assert torch.allclose(samix.MixerLoss(eta=0.5)(z, y_a, y_b, lam), local + 0.5 * glob, atol=1e-6)
    assert torch.allclose(samix.MixerLoss("soft_ce")(z, y_a, y_b, lam), glob, atol=1e-6)
