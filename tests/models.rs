//! Output and stage shapes of every architecture, parameter counts, and the initialisation.
mod common;
use samix::model::{Arch, ModelConfig, Stem};
use samix::model::{Network, StagedNet};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn build(arch: Arch, stem: Stem, classes: i64) -> (VarStore, Network) {
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig { stem, ..ModelConfig::new(arch) };
    let net = Network::new(&vs.root(), &cfg, 3, classes).unwrap();
    (vs, net)
}

fn shapes(net: &Network, side: i64) -> (Vec<i64>, Vec<Vec<i64>>) {
    let x = Tensor::randn([2, 3, side, side], (Kind::Float, Device::Cpu));
    let (logits, stages) = tch::no_grad(|| net.forward_stages(&x, false, &(0..net.num_stages()).collect::<Vec<_>>()));
    (logits.size(), stages.iter().map(|s| s.size()[1..].to_vec()).collect())
}

fn trainable(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[test]
fn resnet18_cifar_stages_and_parameter_count() {
    let _rng = common::torch_rng_lock();
    let (vs, net) = build(Arch::Resnet18, Stem::Cifar, 100);
    let (logits, st) = shapes(&net, 32);
    assert_eq!(logits, [2, 100]);
    assert_eq!(st, [vec![64, 32, 32], vec![128, 16, 16], vec![256, 8, 8], vec![512, 4, 4]]);
    // torchvision's resnet18 (11,689,512) with a 3×3 stem and a 100-way fc.
    assert_eq!(trainable(&vs), 11_220_132);
}

#[test]
fn resnet_imagenet_stem_at_224() {
    let _rng = common::torch_rng_lock();
    let (_, net) = build(Arch::Resnet18, Stem::Imagenet, 1000);
    let (logits, st) = shapes(&net, 224);
    assert_eq!(logits, [2, 1000]);
    assert_eq!(st[2], [256, 14, 14]);
    assert_eq!(st[3], [512, 7, 7]);
    let (vs, _) = build(Arch::Resnet50, Stem::Imagenet, 1000);
    assert_eq!(trainable(&vs), 25_557_032, "torchvision resnet50");
}

#[test]
fn resnet34_50_resnext_cifar() {
    let _rng = common::torch_rng_lock();
    let (vs, net) = build(Arch::Resnet34, Stem::Cifar, 100);
    assert_eq!(shapes(&net, 32).1[3], [512, 4, 4]);
    assert_eq!(trainable(&vs), 21_328_292);
    let (_, net) = build(Arch::Resnet50, Stem::Cifar, 100);
    let (_, st) = shapes(&net, 32);
    assert_eq!(st, [vec![256, 32, 32], vec![512, 16, 16], vec![1024, 8, 8], vec![2048, 4, 4]]);
    let (vs, net) = build(Arch::Resnext50_32x4d, Stem::Cifar, 100);
    let (logits, st) = shapes(&net, 32);
    assert_eq!(logits, [2, 100]);
    assert_eq!(st[2], [1024, 8, 8]);
    let vars = vs.variables();
    // 32 groups of 4 channels in the first stage's grouped 3×3 conv.
    assert_eq!(vars["layer1.0.conv2.weight"].size(), [128, 4, 3, 3]);
}

#[test]
fn wrn28_8_stages() {
    let _rng = common::torch_rng_lock();
    let (vs, net) = build(Arch::Wrn28_8, Stem::Cifar, 100);
    let (logits, st) = shapes(&net, 32);
    assert_eq!(logits, [2, 100]);
    assert_eq!(st, [vec![128, 32, 32], vec![256, 16, 16], vec![512, 8, 8]]);
    let n = trainable(&vs);
    assert!((23_000_000..24_000_000).contains(&n), "WRN-28-8 has about 23.4M parameters, got {n}");
}

#[test]
fn initialisation_follows_the_reference() {
    let _rng = common::torch_rng_lock();
    let (vs, net) = build(Arch::Resnet18, Stem::Cifar, 100);
    let v = vs.variables();
    // Zero-init of the last BN γ of every residual block; other BN γ = 1.
    for name in ["layer1.0.bn2.weight", "layer4.1.bn2.weight"] {
        assert_eq!(v[name].abs().max().double_value(&[]), 0.0, "{name}");
    }
    assert_eq!(v["layer1.0.bn1.weight"].min().double_value(&[]), 1.0);
    // Kaiming normal, fan-out, ReLU gain: std = sqrt(2 / (out·k·k)).
    let w = &v["layer3.0.conv1.weight"];
    let expected = (2.0 / (256.0 * 9.0f64)).sqrt();
    let std = w.std(true).double_value(&[]);
    assert!((std / expected - 1.0).abs() < 0.03, "conv std {std} vs {expected}");
    let fc = &v["fc.weight"];
    assert!((fc.std(true).double_value(&[]) - 0.01).abs() < 0.001);
    assert_eq!(v["fc.bias"].abs().max().double_value(&[]), 0.0);
    // At init the residual branches are off, so each block is the identity + ReLU on its input:
    // the logits still depend on the input through the stem and shortcuts.
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = net.forward_t(&x, true);
    assert_eq!(y.size(), [4, 100]);
}

#[test]
fn gradients_reach_every_parameter() {
    let _rng = common::torch_rng_lock();
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig { base_width: Some(8), blocks: Some(vec![1, 1, 1, 1]), ..ModelConfig::new(Arch::Resnet18) };
    let net = Network::new(&vs.root(), &cfg, 3, 10).unwrap();
    // Give the zero-initialised γ a value so every branch carries gradient.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            if t.requires_grad() {
                let _ = t.g_add_(&(t.randn_like() * 0.1));
            }
        }
    });
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[1i64, 2, 3, 4]);
    net.forward_t(&x, true).cross_entropy_for_logits(&y).backward();
    for (name, t) in vs.variables() {
        if t.requires_grad() {
            let g = t.grad();
            assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} got no gradient");
        }
    }
}

/// `model.norm = "group"`: no running statistics, each image normalised on its own (the output
/// of an image does not depend on the rest of its batch, in training mode too), and a group
/// count that divides every layer's channels.
#[test]
fn group_norm_networks_do_not_depend_on_the_batch() {
    let _lock = common::torch_rng_lock();
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let cfg = ModelConfig {
        base_width: Some(12),
        blocks: Some(vec![1, 1, 1, 1]),
        norm: samix::model::NormKind::Group,
        norm_groups: 8,
        ..ModelConfig::new(Arch::Resnet18)
    };
    let net = Network::new(&vs.root(), &cfg, 3, 10).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(!names.iter().any(|n| n.contains("running")), "GroupNorm keeps no statistics: {names:?}");
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let batch = net.forward_t(&x, true);
    let alone = net.forward_t(&x.narrow(0, 1, 1), true);
    assert!(batch.narrow(0, 1, 1).allclose(&alone, 1e-5, 1e-5, false));
    // BatchNorm does depend on the batch (the property above is not vacuous).
    let bn =
        Network::new(&vs.root().sub("bn"), &ModelConfig { norm: samix::model::NormKind::Batch, ..cfg }, 3, 10).unwrap();
    assert!(!bn.forward_t(&x, true).narrow(0, 1, 1).allclose(
        &bn.forward_t(&x.narrow(0, 1, 1), true),
        1e-3,
        1e-3,
        false
    ));
}

/// The WRN is the reference's (issue 11, item 1): logits in training and evaluation mode, and the
/// BatchNorm statistics after a training pass, against an independent PyTorch statement of it
/// (tests/oracle/wrn_reference.py: LeakyReLU 0.1, BN ε 1e-3 / momentum 0.001, conv biases, the
/// later stages' shortcuts from the raw input). Every variable is randomised first, so each
/// detail shows (the biases, γ/β and statistics all non-trivial).
#[test]
fn wrn_matches_an_independent_pytorch_reference() {
    let _lock = common::torch_rng_lock();
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    // Widths 4 → 8/16/32: projection shortcuts in every stage's first block, identities after.
    let mut wc = samix::model::WideResNetConfig::wrn28_8(3, 5);
    (wc.base_width, wc.widen, wc.blocks) = (4, 2, vec![2, 2, 2]);
    let net = Network::Wide(samix::model::WideResNet::new(&vs.root(), &wc));
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let r = if name.ends_with("running_var") { t.rand_like() + 0.5 } else { t.randn_like() * 0.3 };
            t.copy_(&r);
        }
    });
    let x = Tensor::randn([3, 3, 16, 16], (Kind::Float, Device::Cpu));
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("w.npz");
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    named.push(("input".into(), x.copy()));
    Tensor::write_npz(&named, &npz).unwrap();
    let stdout = common::venv_python(&[common::oracle_script("wrn_reference.py"), npz, "2,2,2".into()]);
    let oracle: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    let close = |ours: &Tensor, theirs: Vec<f32>, what: &str| {
        let theirs = Tensor::from_slice(&theirs);
        let ours = ours.flatten(0, -1);
        let diff = (&ours - &theirs).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{what}: differs from the reference by {diff}");
    };
    let eval_logits = tch::no_grad(|| net.forward_t(&x, false));
    close(&eval_logits, floats(&oracle["eval"]), "evaluation logits");
    let train_logits = tch::no_grad(|| net.forward_t(&x, true));
    close(&train_logits, floats(&oracle["train"]), "training logits");
    let vars = vs.variables();
    let means = oracle["running_mean"].as_object().unwrap();
    assert_eq!(means.len(), vars.keys().filter(|k| k.ends_with("running_mean")).count());
    for (layer, theirs) in means {
        close(&vars[&format!("{layer}.running_mean")], floats(theirs), &format!("{layer}.running_mean"));
    }
}
