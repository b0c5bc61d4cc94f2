//! TransMix (issue 26): the label weights against a hand computation on a fixed attention map and
//! box, the attention the ViT hands over (the class token's, rows summing to 1, the logits those
//! of the ordinary forward), and the policy refusing a network without a class token.
mod common;

use rand::SeedableRng;
use samix::mix::{transmix_lambda, CutBox, TransmixConfig};
use samix::model::{Arch, ModelConfig, Network, StagedNet};
use samix::rng::SamixRng;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

#[test]
fn label_weights_equal_a_hand_computation() {
    // An 8×8 image on a 4×4 patch grid (2-px patches). The box covers rows 2..6 and columns 0..3:
    // 12 of 64 pixels, so the area gives the first image 0.8125. By their top-left pixels the
    // patches (1,0), (1,1), (2,0), (2,1) are inside it: indices 4, 5, 8, 9.
    let b = CutBox { y0: 2, y1: 6, x0: 0, x1: 3 };
    let uniform = Tensor::full([1, 16], 1.0 / 16.0, (Kind::Float, Device::Cpu));
    let on_patch_5 = Tensor::zeros([1, 16], (Kind::Float, Device::Cpu));
    let _ = on_patch_5.narrow(1, 5, 1).fill_(1.0);
    let on_patch_2 = Tensor::zeros([1, 16], (Kind::Float, Device::Cpu));
    let _ = on_patch_2.narrow(1, 2, 1).fill_(1.0);
    let attention = Tensor::cat(&[uniform, on_patch_5, on_patch_2], 0);
    let lam = common::f64s(&transmix_lambda(b, 8, 8, &attention, 0.5));
    // Uniform attention: 12 of 16 patches outside → 0.75; all on patch 5 (inside) → 0; all on
    // patch 2 (top-left pixel (0, 4): outside) → 1. λ = ½·0.8125 + ½·that.
    for (got, want) in lam.iter().zip([0.78125, 0.40625, 0.90625]) {
        assert!((got - want).abs() < 1e-6, "{lam:?}");
    }
    // Only the area (area_weight 1), only the attention (0).
    assert!((common::f64s(&transmix_lambda(b, 8, 8, &attention, 1.0))[1] - 0.8125).abs() < 1e-6);
    assert!((common::f64s(&transmix_lambda(b, 8, 8, &attention, 0.0))[0] - 0.75).abs() < 1e-6);
}

fn tiny_vit() -> (VarStore, Network) {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig {
        base_width: Some(24),
        depth: Some(2),
        heads: Some(2),
        patch_size: Some(4),
        image_size: Some(16),
        ..ModelConfig::new(Arch::DeitTiny)
    };
    let net = Network::new(&vs.root(), &cfg, 3, 10).unwrap();
    (vs, net)
}

#[test]
fn the_vit_hands_over_its_class_token_attention() {
    let _lock = common::torch_rng_lock();
    let (_vs, net) = tiny_vit();
    let x = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
    let (logits, attention) = tch::no_grad(|| net.forward_with_class_attention(&x, false)).unwrap();
    assert_eq!(attention.size(), [3, 16], "one weight per patch of the 4×4 grid");
    // The class token also attends to itself, so a row sums to just below 1.
    let sums = common::f64s(&attention.sum_dim_intlist(1, false, Kind::Double));
    assert!(sums.iter().all(|s| *s > 0.5 && *s < 1.0), "{sums:?}");
    let plain = tch::no_grad(|| net.forward_t(&x, false));
    assert!(logits.allclose(&plain, 1e-5, 1e-5, false), "the written-out attention changes the logits");
}

#[test]
fn transmix_mixes_a_vit_and_refuses_a_resnet() {
    let _lock = common::torch_rng_lock();
    let (_vs, net) = tiny_vit();
    let cfg = TransmixConfig { alpha: 1.0, mixup_alpha: 0.8, mixup_prob: 0.0, area_weight: 0.5 };
    let policy = cfg.build().unwrap();
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(4, (Kind::Int64, Device::Cpu));
    let out = policy.forward(&net, &x, &y, true, &mut SamixRng::seed_from_u64(1)).unwrap();
    assert_eq!(out.logits.size(), [4, 10]);
    let lam = common::f64s(&out.targets.lam);
    assert!(lam.iter().all(|l| (0.0..=1.0).contains(l)), "{lam:?}");
    assert!(!out.targets.lam.requires_grad(), "λ carries no gradient");

    let vs = VarStore::new(Device::Cpu);
    let small = ModelConfig { base_width: Some(8), blocks: Some(vec![1, 1, 1, 1]), ..ModelConfig::new(Arch::Resnet18) };
    let resnet = Network::new(&vs.root(), &small, 3, 10).unwrap();
    let err = policy.forward(&resnet, &x, &y, true, &mut SamixRng::seed_from_u64(1)).err().unwrap().to_string();
    assert!(err.contains("mix.policy") && err.contains("class-token attention"), "{err}");
}
