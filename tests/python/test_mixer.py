"""The online Mixer driven from PyTorch: parameters a torch optimiser owns, gradients from a Python
backward() reaching the Mixer and the user's model where SAMix's step routes them and nowhere
else (docs/ALGORITHM.md §3–§4), the losses against hand computation, state round trips."""

import copy

import pytest
import torch
from conftest import fashion

import samix


class Net(torch.nn.Module):
    """A small CNN whose second stage (16 channels, 7×7 for 28-pixel images) the Mixer reads, with
    SAMix's two heads: ``fc`` for clean images, ``mix_head`` for mixed ones."""

    def __init__(self):
        super().__init__()
        self.stage1 = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.stage2 = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.fc, self.mix_head = torch.nn.Linear(16, 10), torch.nn.Linear(16, 10)

    def features(self, x):
        """Pooled features and the stage-2 map."""
        f = self.stage2(self.stage1(x))
        return f.mean(dim=(2, 3)), f


def samix_terms(model, critic, mixer, x, y):
    """SAMix's four loss terms (src/samix/online.rs `losses`), each branch with its own draws."""
    n = x.shape[0]
    (perm_mb, lam_mb), (perm_bb, lam_bb) = (torch.randperm(n), 0.4), (torch.randperm(n), 0.7)
    with torch.no_grad():
        f = critic.features(x)[1]
    s_mb = mixer(f, perm_mb, lam_mb)
    x_mb = x * (1 - s_mb) + x[perm_mb] * s_mb
    mix_k = samix.MixerLoss()(critic.mix_head(critic.features(x_mb)[0]), y, y[perm_mb], torch.full((n,), lam_mb))
    mask = samix.MaskLoss()(s_mb, lam_mb)
    with torch.no_grad():
        s_bb = samix.backbone_mask(mixer(f, perm_bb, lam_bb), lam_bb)
    x_bb = x * (1 - s_bb) + x[perm_bb] * s_bb
    one_q = torch.nn.functional.cross_entropy(model.fc(model.features(x)[0]), y)
    mix_q = samix.mixup_cross_entropy(model.mix_head(model.features(x_bb)[0]), y, y[perm_bb], torch.full((n,), lam_bb))
    return {"one_q": one_q, "mix_q": mix_q, "mix_k": mix_k, "mask": mask}


def reached(loss, params):
    """Which of `params` a loss's gradient reaches (non-zero)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [g is not None and bool(g.abs().sum() > 0) for g in grads]


def test_gradients_reach_the_mixer_and_the_model_where_samix_routes_them():
    torch.manual_seed(0)
    x, y = fashion("train", 16)
    model = Net()
    critic = copy.deepcopy(model).requires_grad_(False)
    mixer = samix.Mixer(in_channels=16, scale=4)
    mixer_params = list(mixer.parameters())
    assert sorted(n for n, _ in mixer.named_parameters()) == sorted(
        ["key.bias", "key.weight", "query.bias", "query.weight", "value.bn.bias", "value.bn.weight", "value.conv1.weight", "value.conv2.weight"]
    )
    terms = samix_terms(model, critic, mixer, x, y)
    body = [p for n, p in model.named_parameters() if n.startswith("stage")]
    # The Mixer learns from its two losses, through samix's mask and losses, and from nothing else.
    assert all(reached(terms["mix_k"], mixer_params)) and all(reached(terms["mask"], mixer_params))
    assert not any(reached(terms["mix_q"] + terms["one_q"], mixer_params))
    # The network: its body from both of its losses, each head from its own.
    assert all(reached(terms["one_q"], body)) and all(reached(terms["mix_q"], body))
    assert reached(terms["one_q"], [model.fc.weight, model.mix_head.weight]) == [True, False]
    assert reached(terms["mix_q"], [model.fc.weight, model.mix_head.weight]) == [False, True]
    # One backward of the total, as a loop runs it, fills exactly those gradients.
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in mixer_params + list(model.parameters()))


def test_features_with_grad_pass_it_on_to_the_network_that_made_them():
    torch.manual_seed(0)
    x, _ = fashion("train", 8)
    model, mixer = Net(), samix.Mixer(in_channels=16, scale=4)
    f = model.features(x)[1]
    assert all(reached(mixer(f, torch.randperm(8), 0.5).sum(), list(model.stage1.parameters())))
    assert not any(reached(mixer(f.detach(), torch.randperm(8), 0.5).sum() + f.sum() * 0, list(model.stage1.parameters())))


def test_a_torch_optimiser_updates_the_mixers_own_tensors():
    torch.manual_seed(0)
    x, _ = fashion("train", 8)
    f = Net().features(x)[1].detach()
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
    with pytest.raises(TypeError, match=r"^features: expected float32 \(the Mixer's kind\), got Double"):
        a(f.double(), perm, 0.5)
    with pytest.raises(TypeError, match=r"^perm: expected int64 sample indices, got Int"):
        a(f, perm.int(), 0.5)
    # What only libtorch sees is a RuntimeError with its message, and the Mixer stays usable.
    with pytest.raises(RuntimeError, match=r"^torch: .*index"):
        a(f, torch.tensor([1, 0, 3, 9]), 0.5)
    assert torch.equal(a(f, perm, 0.5), b(f, perm, 0.5))
    with pytest.raises(RuntimeError, match=r"^torch: "):
        samix.MixerLoss()(torch.randn(4, 10), torch.tensor([0, 1, 2, 10]), torch.tensor([0, 1, 2, 3]), torch.rand(4))
    with pytest.raises(ValueError, match=r"^adjust: expected shape \[4, 1, 1, 1\], got \[2, 1, 1, 1\]"):
        samix.backbone_mask(torch.rand(4, 1, 8, 8), 0.5, adjust=torch.ones(2))
    with pytest.raises(ValueError, match=r"^config key `mix.lam_margin`"):
        samix.backbone_mask(torch.rand(4, 1, 8, 8), 0.5, lam_margin=0.7)
    with pytest.raises(ValueError, match=r"^eta: soft_ce has no weight"):
        samix.MixerLoss("soft_ce", eta=0.5)
    with pytest.raises(ValueError, match=r"^config key `mix.mixer_loss.eta`: must be a number >= 0"):
        samix.MixerLoss(eta=-1.0)


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


def test_backbone_mask_adjusts_the_flagged_samples_area_to_lambda():
    torch.manual_seed(4)
    s = torch.rand(4, 1, 8, 8)
    out = samix.backbone_mask(s, 0.3, adjust=torch.tensor([True, False, True, False]))
    area = (1 - out).mean(dim=(1, 2, 3))
    assert torch.allclose(area[[0, 2]], torch.tensor([0.3, 0.3]), atol=1e-5)
    assert torch.equal(out[[1, 3]], s[[1, 3]])
    # λ within lam_margin of 0 or 1: plain MixUp (the partner's weight 1 − λ everywhere).
    assert torch.allclose(samix.backbone_mask(s, 0.05), torch.full_like(s, 0.95))
