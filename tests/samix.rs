//! Online SAMix: the Mixer's λ encoding and shapes, where gradients flow, mask and η losses
//! against hand-computed numbers, mask post-processing, the EMA schedule, and a short real run.
mod common;
use common::*;
use rand::SeedableRng;
use samix::config::{MixConfig, TrainConfig};
use samix::loss::{mixup_cross_entropy, MixupLoss};
use samix::mix::MixedTargets;
use samix::model::{Arch, ModelConfig, Network};
use samix::rng::SamixRng;
use samix::samix::{adjust_area, backbone_mask};
use samix::samix::{
    apply_mask, lambda_encoding, mask_loss, MaskLossConfig, MaskLossMode, Mixer, MixerConfig, MixerShape, Upsample,
};
use samix::samix::{EmaConfig, MixerVariant, OnlineSamix, SamixConfig, SamixOptions, Scenario};
use samix::train::metrics;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn lambda_encoding_matches_the_spec() {
    let _rng = common::torch_rng_lock();
    for (lam, want) in [(0.1, 0.1823), (0.2, 0.3097), (0.3, 0.3960), (0.7, 0.6040), (0.9, 0.8177)] {
        assert!((lambda_encoding(lam, 0.25) - want).abs() < 5e-5, "g_0.25({lam})");
    }
    assert!((lambda_encoding(0.1, 1.0) - 0.136).abs() < 5e-4);
    assert!((lambda_encoding(0.3, 1.0) - 0.342).abs() < 5e-4);
    for lam in [0.0, 0.13, 0.5, 0.77, 1.0] {
        assert!((lambda_encoding(1.0 - lam, 0.25) - (1.0 - lambda_encoding(lam, 0.25))).abs() < 1e-12);
        assert_eq!(lambda_encoding(lam, -1.0), lam);
    }
}

fn mixer(cfg: &MixerConfig, c: i64, scale: i64) -> (VarStore, Mixer) {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let m = Mixer::new(&(vs.root() / "mixer"), cfg, MixerShape { in_channels: c, scale });
    (vs, m)
}

#[test]
fn mixer_shapes_at_the_cifar_r18_sizes() {
    let _rng = common::torch_rng_lock();
    for cfg in [MixerConfig::default(), MixerConfig::automix()] {
        let (vs, m) = mixer(&cfg, 256, 4);
        let f = Tensor::randn([6, 256, 8, 8], (Kind::Float, Device::Cpu));
        let perm = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 0]);
        let s = m.mask(&f, &perm, &lam(0.3), true);
        assert_eq!(s.size(), [6, 1, 32, 32]);
        let (lo, hi) = (s.min().double_value(&[]), s.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0);
        // [1−s, s] sums to one per pixel, and applying it interpolates the two images.
        let (zeros, ones) = (
            Tensor::zeros([6, 3, 32, 32], (Kind::Float, Device::Cpu)),
            Tensor::ones([6, 3, 32, 32], (Kind::Float, Device::Cpu)),
        );
        assert!(apply_mask(&zeros, &ones, &s).allclose(&s.expand([6, 3, 32, 32], false), 1e-6, 1e-6, false));
        let names: Vec<String> = vs.variables().into_keys().collect();
        match cfg.variant {
            MixerVariant::Samix => {
                assert_eq!(vs.variables()["mixer.query.weight"].size(), [128, 512, 1, 1], "q on the concatenated pair");
                assert!(names.iter().any(|n| n.starts_with("mixer.value.bn")));
            }
            MixerVariant::Automix => {
                assert_eq!(vs.variables()["mixer.query.weight"].size(), [128, 256, 1, 1], "one shared q/k conv");
                assert_eq!(vs.variables()["mixer.value.conv.weight"].size(), [1, 256, 1, 1]);
            }
        }
    }
    // Nearest upsampling is constant on 4×4 blocks; SAMix's λ encoding makes the mask depend on λ.
    let cfg = MixerConfig { upsample: Some(Upsample::Nearest), ..Default::default() };
    let (vs, m) = mixer(&cfg, 16, 4);
    tch::no_grad(|| {
        for (_, mut t) in vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
            let _ = t.g_add_(&(t.randn_like() * 0.5));
        }
    });
    let f = Tensor::randn([2, 16, 4, 4], (Kind::Float, Device::Cpu));
    let perm = Tensor::from_slice(&[1i64, 0]);
    let s = m.mask(&f, &perm, &lam(0.5), false);
    let block = s.get(0).narrow(1, 4, 4).narrow(2, 8, 4);
    assert!((block.max() - block.min()).double_value(&[]) == 0.0);
    assert!(!m.mask(&f, &perm, &lam(0.2), false).allclose(&s, 1e-4, 1e-4, false));
}

fn tiny_samix(options: SamixOptions) -> (VarStore, OnlineSamix<Network>) {
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let model = ModelConfig { base_width: Some(8), blocks: Some(vec![1, 1, 1, 1]), ..ModelConfig::new(Arch::Resnet18) };
    let nets = common::online_samix(&vs, &model, options, 3, 10, 16);
    // Give the zero-initialised BN γ a value so that every parameter lies on a gradient path.
    tch::no_grad(|| {
        for (n, mut t) in vs.variables() {
            if n.starts_with("q.") && n.ends_with("bn2.weight") {
                let _ = t.g_add_scalar_(0.5);
            }
        }
    });
    (vs, nets)
}

fn grad_norms(vs: &VarStore, prefix: &str) -> Vec<(String, f64)> {
    vs.variables()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(n, t)| {
            let g = t.grad();
            (n, if g.defined() { g.abs().sum(Kind::Double).double_value(&[]) } else { 0.0 })
        })
        .collect()
}

#[test]
fn gradients_flow_where_the_spec_says() {
    let _rng = common::torch_rng_lock();
    let resolved = SamixConfig { alpha: 2.0, ..toml::from_str::<SamixConfig>("").unwrap() }
        .resolve(MixerVariant::Samix, Scenario::Supervised);
    let (vs, nets) = tiny_samix(resolved);
    assert_eq!(nets.mixer.shape(), MixerShape { in_channels: 32, scale: 4 });
    let x = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7]);
    let mut rng = SamixRng::seed_from_u64(1);
    let mut d = nets.draw(8, &mut rng, Device::Cpu);
    d.lam_bb = lam(0.4); // away from the margin, so the backbone mask is the learned one
    let trainable =
        |prefix: &str| vs.variables().into_iter().filter(|(n, t)| n.starts_with(prefix) && t.requires_grad()).count();
    assert_eq!(trainable("k."), 0, "the EMA networks are frozen");
    assert!(trainable("q.") > 0 && trainable("mixer.") > 0);

    // Mixer branch + mask loss: the Mixer only.
    let l = nets.losses(&x, &y, &d, 0.0);
    (&l.mix_k + &l.mask).backward();
    assert!(
        grad_norms(&vs, "mixer.").iter().all(|(n, g)| *g > 0.0 || n.contains("running")),
        "{:?}",
        grad_norms(&vs, "mixer.")
    );
    assert!(grad_norms(&vs, "q.").iter().all(|(_, g)| *g == 0.0), "online net got Mixer-branch gradient");
    assert!(grad_norms(&vs, "k.").iter().all(|(_, g)| *g == 0.0));
    for (_, mut t) in vs.variables() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
        let _ = &mut t;
    }
    // Clean CE + backbone-branch mixup CE: the online network only.
    let l = nets.losses(&x, &y, &d, 0.0);
    (&l.one_q + &l.mix_q).backward();
    let q = grad_norms(&vs, "q.");
    for must in ["q.fc.weight", "q.head_mix.fc.weight", "q.conv1.weight", "q.layer4.0.conv2.weight"] {
        assert!(q.iter().any(|(n, g)| n == must && *g > 0.0), "{must} got no gradient");
    }
    assert!(grad_norms(&vs, "mixer.").iter().all(|(_, g)| *g == 0.0), "Mixer got backbone-branch gradient");
    assert!(grad_norms(&vs, "k.").iter().all(|(_, g)| *g == 0.0));
    // The detached backbone mask carries no graph at all.
    assert!(!l.s_bb.requires_grad() && l.s_mb.requires_grad());
    // The Mixer's parameters, and only they, form the optimiser group with its own schedule.
    let optim = samix::optim::OptimConfig::default();
    let sgd = samix::optim::Optimizer::with_groups(
        &vs,
        &optim,
        &[samix::optim::ParamGroup { prefix: "mixer.".into(), cfg: optim.clone() }],
    );
    let (online, mixer) = (sgd.group_params(0), sgd.group_params(1));
    assert!(!mixer.is_empty() && mixer.iter().all(|n| n.starts_with("mixer.")));
    assert!(!online.is_empty() && online.iter().all(|n| n.starts_with("q.")), "EMA variables are not optimised");
    assert_eq!(mixer.len() + online.len(), vs.trainable_variables().iter().filter(|t| t.requires_grad()).count());
}

#[test]
fn ema_update_and_momentum_schedule() {
    let _rng = common::torch_rng_lock();
    let resolved = toml::from_str::<SamixConfig>("").unwrap().resolve(MixerVariant::Samix, Scenario::Supervised);
    let (vs, nets) = tiny_samix(resolved);
    let v = vs.variables();
    let (k0, q0) = (v["k.fc.weight"].copy(), v["q.fc.weight"].copy());
    assert!(k0.equal(&q0), "EMA starts as a copy");
    tch::no_grad(|| {
        let _ = v["q.fc.weight"].shallow_clone().g_add_scalar_(1.0);
    });
    nets.ema_update(0.9).unwrap();
    let expected = &k0 * 0.9 + (&q0 + 1.0) * 0.1;
    assert!(v["k.fc.weight"].allclose(&expected, 1e-6, 1e-6, false));
    let before = v["k.fc.weight"].copy();
    nets.ema_update(1.0).unwrap();
    assert!(v["k.fc.weight"].equal(&before), "momentum 1 freezes the EMA");
    let e = EmaConfig::default();
    assert_eq!(e.momentum_at(0, 1000), 0.999);
    assert_eq!(e.momentum_at(99, 1000), 0.999);
    assert!((e.momentum_at(100, 1000) - 0.99902445).abs() < 1e-8, "the reference's jump at 10%");
    assert!((e.momentum_at(1000, 1000) - 0.999999).abs() < 1e-12);
}

#[test]
fn mask_losses_match_hand_computed_values() {
    let _rng = common::torch_rng_lock();
    let s = Tensor::from_slice(&[0.2f32, 0.6, 0.9, 0.1]).view([2, 1, 1, 2]);
    let cfg = |mode, per_sample| MaskLossConfig { mode, margin: 0.1, weight: 0.1, per_sample, end_weight: None };
    let got = |mode, per_sample| mask_loss(&s, &lam(0.3), &cfg(mode, per_sample)).double_value(&[]);
    // batch mean 0.45, gap 1 − 0.45 − 0.3 = 0.25, variance 0.1025
    for (mode, want) in [
        (MaskLossMode::L1, 0.15),
        (MaskLossMode::L1Variance, 0.15 - 0.205),
        (MaskLossMode::L2Variance, (0.0625 - 0.01) - 0.205),
        (MaskLossMode::Sparsity, 0.145 - 0.1),
    ] {
        assert!((got(mode, false) - 0.1 * want).abs() < 1e-6, "{mode:?}: {} vs {}", got(mode, false), 0.1 * want);
    }
    // per sample: means 0.4 and 0.5, gaps 0.3 and 0.2, variances 0.04 and 0.16
    let want = ((0.2 - 0.08) + (0.1 - 0.32)) / 2.0;
    assert!((got(MaskLossMode::L1Variance, true) - 0.1 * want).abs() < 1e-6);
    // Inside the margin the L1 term is zero.
    assert_eq!(mask_loss(&s, &lam(0.45), &cfg(MaskLossMode::L1, false)).double_value(&[]), 0.0);
}

/// The masks' distance from λ as the metrics log it: hand-made masks whose first-image shares are
/// 0.7 (λ 0.7: on it) and 0.5 (λ 0.9: 0.4 off, beyond the 0.25 of `mask_far_*`).
#[test]
fn mask_area_statistics_measure_the_distance_from_lambda() {
    let on = Tensor::full([1, 1, 2, 2], 0.3, (Kind::Float, Device::Cpu));
    let off = Tensor::from_slice(&[0f32, 1.0, 0.0, 1.0]).view([1, 1, 2, 2]);
    let s = Tensor::cat(&[on, off], 0);
    let lam = Tensor::from_slice(&[0.7f32, 0.9]);
    let (gap, far) = samix::samix::mask::area_gap(&s, &lam);
    assert!((gap.double_value(&[]) - 0.2).abs() < 1e-6, "mean |area − λ| = (0 + 0.4) / 2");
    assert!((far.double_value(&[]) - 0.5).abs() < 1e-6, "one sample of two is far");
    // One λ for the whole batch (a 0-dim tensor), as online SAMix draws it.
    let (gap, _) = samix::samix::mask::area_gap(&s, &Tensor::from(0.7f32));
    assert!((gap.double_value(&[]) - 0.1).abs() < 1e-6, "(0 + 0.2) / 2");
}

/// The transformer configs' mask-loss annealing: 0.1 → 0.02 by a cosine over the run.
#[test]
fn mask_loss_weight_anneals_by_the_cosine() {
    let cfg = MaskLossConfig { end_weight: Some(0.02), ..MaskLossConfig::samix() };
    let weight_at = |t| cfg.weight * cfg.weight_scale(t, 1000);
    assert!((weight_at(0) - 0.1).abs() < 1e-12);
    assert!((weight_at(500) - 0.06).abs() < 1e-12, "halfway: the mean of the ends");
    assert!((weight_at(250) - (0.02 + 0.08 * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0)).abs() < 1e-12);
    assert!((weight_at(1000) - 0.02).abs() < 1e-12);
    assert_eq!(MaskLossConfig::samix().weight_scale(500, 1000), 1.0, "no end weight: constant");
    let bad = MaskLossConfig { end_weight: Some(0.5), ..MaskLossConfig::samix() };
    assert!(bad.check().unwrap_err().to_string().contains("mix.mask_loss.end_weight"));
}

#[test]
fn eta_losses_match_hand_computed_values() {
    let _rng = common::torch_rng_lock();
    let z = Tensor::from_slice(&[1.0f32, 2.0, 0.5, 0.3, -1.0, 2.0]).view([2, 3]);
    let t = MixedTargets {
        y_a: Tensor::from_slice(&[0i64, 2]),
        y_b: Tensor::from_slice(&[1i64, 2]),
        lam: Tensor::from_slice(&[0.7f32, 0.4]),
    };
    let (r0, r1) = ([1.0f64, 2.0, 0.5], [0.3f64, -1.0, 2.0]);
    let lse = |r: &[f64]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
    let ce = |r: [f64; 3], k: usize| lse(&r) - r[k];
    let soft = ((0.7 * ce(r0, 0) + 0.3 * ce(r0, 1)) + ce(r1, 2)) / 2.0;
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let eta = 0.5;
    let check = |loss: MixupLoss, want: f64| {
        let got = loss.compute(&z, &t).double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{loss:?}: {got} vs {want}");
    };
    check(MixupLoss::SoftCe, soft);
    let local = (-(0.7 * sig(1.0 - 2.0).ln() + 0.3 * sig(2.0 - 1.0).ln()) + 0.0) / 2.0;
    check(MixupLoss::PairLocalGlobal { eta }, local + eta * soft);
    let bce = |v: f64, target: f64| (1.0 + v.exp()).ln() - target * v;
    let row0 = bce(1.0, 0.7) + bce(2.0, 0.3) + eta * bce(0.5, 0.0);
    let row1 = eta * bce(0.3, 0.0) + eta * bce(-1.0, 0.0) + bce(2.0, 1.0);
    check(MixupLoss::BceNeg { eta }, (row0 + row1) / 2.0);
    let term = |zt: f64| -(zt - lse(&[zt, 0.5]));
    check(MixupLoss::Decoupled { eta }, soft + eta * (term(1.0) + term(2.0)) / 2.0);
    assert!((MixupLoss::SoftCe.compute(&z, &t) - mixup_cross_entropy(&z, &t, 0.0)).abs().double_value(&[]) < 1e-7);
}

#[test]
fn backbone_mask_post_processing() {
    let _rng = common::torch_rng_lock();
    let s = Tensor::rand([4, 1, 8, 8], (Kind::Float, Device::Cpu));
    for l in [0.2, 0.5, 0.77] {
        let a = adjust_area(&s, &lam(l));
        let first_share = f64s(&(-&a + 1.0).mean_dim(&[1i64, 2, 3][..], false, Kind::Double));
        assert!(first_share.iter().all(|m| (m - l).abs() < 1e-5), "{first_share:?} vs {l}");
        assert!(a.min().double_value(&[]) >= 0.0 && a.max().double_value(&[]) <= 1.0);
    }
    let flat = backbone_mask(s.shallow_clone(), &lam(0.05), None, 0.08);
    assert!(f64s(&flat).iter().all(|v| (v - 0.95).abs() < 1e-6), "λ within the margin gives plain mixup");
    assert!(backbone_mask(s.shallow_clone(), &lam(0.5), None, 0.08).equal(&s));
}

fn samix_config(train: usize, epochs: usize, extra: &str) -> TrainConfig {
    let text = tiny_fashion_config(train, 500, epochs, &format!("policy = \"samix\"\nvisual_every = 1\n{extra}"));
    TrainConfig::parse(&text, &[]).unwrap()
}

fn run(cfg: &TrainConfig, out: &std::path::Path, resume: bool, stop_after: Option<usize>) -> metrics::Summary {
    common::train_run(cfg, out, resume, false, stop_after).unwrap()
}

#[test]
fn samix_run_learns_and_writes_its_artifacts() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = samix_config(6000, 3, "");
    assert!(matches!(cfg.mix, MixConfig::Samix(_)));
    let out = tmp.path().join("run");
    run(&cfg, &out, false, None);
    let m = metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    let last = &m[2].extra;
    for key in
        ["acc1_one_k", "acc1_mix_k", "acc1_one_q", "acc1_mix_q", "loss_one_q", "loss_mix_q", "loss_mix_k", "loss_mask"]
    {
        assert!(last.contains_key(key), "{key} missing");
    }
    for key in samix::samix::mask::AREA_TERMS {
        let v = last.get(key).copied().unwrap_or_else(|| panic!("{key} missing"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v} is not a distance of areas or a share");
    }
    // The L1+Variance mask loss (margin 0.1) holds the Mixer's areas near λ.
    assert!(last["mask_gap_mb"] < 0.2, "Mixer-branch masks drifted from λ: {}", last["mask_gap_mb"]);
    assert!(last["acc1_one_q"] > 50.0, "online classifier learns: {}", last["acc1_one_q"]);
    assert!(m[2].extra["loss_mix_k"] < m[0].extra["loss_mix_k"], "the critic's loss on Mixer samples falls");
    for f in [
        "visuals/masks_epoch_0001.png",
        "visuals/masks_epoch_0003.png",
        "visuals/masks_evolution.png",
        "mixer.json",
        "mixer.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let saved = Tensor::read_safetensors(out.join("mixer.safetensors")).unwrap();
    assert!(saved.iter().any(|(n, _)| n == "mixer.query.weight") && saved.iter().any(|(n, _)| n == "k.fc.weight"));
    assert!(!saved.iter().any(|(n, _)| n.starts_with("q.")), "the artifact holds the Mixer and the EMA encoder only");
    let art: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mixer.json")).unwrap()).unwrap();
    assert_eq!(art["shape"]["scale"], 4);
    assert_eq!(art["mask_stage"], 2);
    // `samix eval` deploys the EMA classifier: same accuracy as the run's `one_k` head.
    let ckpt = samix::train::checkpoint::open(&out).unwrap();
    let splits = samix::data::open_splits(&cfg.data).unwrap();
    let model = samix::train::Model::from_checkpoint(&ckpt, &cfg, splits.test.info(), Device::Cpu).unwrap();
    let r =
        samix::train::eval::evaluate(&model.net, &samix::train::eval_loader(&cfg, splits.test, Device::Cpu)).unwrap();
    assert!((r.acc1 - last["acc1_one_k"]).abs() < 1e-9, "{} vs {}", r.acc1, last["acc1_one_k"]);
}

#[test]
fn samix_resume_equals_uninterrupted() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = samix_config(400, 2, "mask_adjust = 0.5");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run(&cfg, &a, false, None);
    run(&cfg, &b, false, Some(1));
    run(&cfg, &b, true, None);
    let load = |p: &std::path::Path| {
        let mut w = Tensor::read_safetensors(p.join("checkpoints/epoch-0002/model.safetensors")).unwrap();
        w.sort_by(|x, y| x.0.cmp(&y.0));
        w
    };
    for ((na, ta), (nb, tb)) in load(&a).iter().zip(&load(&b)) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resume");
    }
}

fn get_classes(names: &[(String, TrainConfig)], name: &str) -> Option<[usize; 2]> {
    names.iter().find(|(n, _)| n == name).and_then(|(_, c)| c.data.classes)
}

#[test]
fn every_shipped_config_parses_and_the_presets_resolve() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut names = Vec::new();
    let mut folders = vec![dir];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let cfg = TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push((path.file_stem().unwrap().to_string_lossy().into_owned(), cfg));
        }
    }
    // The transfer experiment's configs: disjoint class halves, SAMix-P reading the pre-training run.
    assert_eq!(get_classes(&names, "pretrain_samix_c00_49"), Some([0, 50]));
    assert_eq!(get_classes(&names, "c50_99_samix_p"), Some([50, 100]));
    let get = |n: &str| names.iter().find(|(name, _)| name == n).map(|(_, c)| c.clone()).unwrap();
    let r = get("cifar100_r18_samix").mix.online_mixer(Scenario::Supervised).unwrap();
    assert_eq!(r.mixer, MixerConfig { upsample: Some(Upsample::Bilinear), ..MixerConfig::default() });
    assert_eq!(r.mixer.upsample_mode(), MixerConfig::default().upsample_mode());
    assert_eq!(r.mask_loss, MaskLossConfig::samix());
    assert_eq!(r.mixer_loss, MixupLoss::PairLocalGlobal { eta: 0.5 });
    assert_eq!(get("cifar100_r18_samix").schedule.min_lr, 0.05);
    let a = get("cifar100_r18_automix").mix.online_mixer(Scenario::Supervised).unwrap();
    assert_eq!(
        (a.mixer.variant, a.mixer.upsample_mode(), a.mask_loss.mode),
        (MixerVariant::Automix, Upsample::Nearest, MaskLossMode::L1)
    );
    assert_eq!(a.mixer_loss, MixupLoss::SoftCe);
    let w = get("cifar100_wrn28_8_samix");
    let wr = w.mix.online_mixer(Scenario::Supervised).unwrap();
    let (wc, _) = w.mix.online_config().unwrap();
    assert_eq!((wr.mask_stage, wc.mixer_optim.momentum), (1, Some(0.0)));
    assert_eq!(get("tiny_imagenet_r18_samix").mix.online_mixer(Scenario::Supervised).unwrap().mixer.lam_mul_k, -1.0);
    // The reference's SSL protocol: MoCoSAMix's default Mixer loss, its k-NN τ, the train-mode probe.
    let r = get("cifar100_r18_moco_samix_reference");
    let rc = r.mix.online_config().unwrap();
    let ro = rc.0.resolve(rc.1, Scenario::SelfSupervised);
    assert_eq!(ro.contrastive_loss, samix::samix::ContrastiveLoss::Global);
    assert_eq!((r.ssl.as_ref().unwrap().knn_temperature, r.ssl.as_ref().unwrap().queue_size), (0.07, Some(65536)));
    assert_eq!(get("cifar100_r18_linear_reference").train.probe_bn, samix::config::ProbeBn::Train);
    for n in [
        "quickstart",
        "quickstart_mixup",
        "cifar100_r18_vanilla",
        "cifar100_r18_mixup",
        "cifar100_r18_cutmix",
        "cifar100_rx50_samix",
    ] {
        get(n);
    }
}

/// λ as the 0-dim float tensor the SAMix functions take (a host scalar).
fn lam(v: f64) -> Tensor {
    Tensor::from(v as f32)
}

#[test]
fn samix_run_learns_in_bf16_too() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = samix_config(3000, 2, "");
    cfg.train.precision = samix::native::Precision::Bf16;
    let out = tmp.path().join("run");
    run(&cfg, &out, false, None);
    let m = metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert!(m.iter().all(|e| e.train_loss.is_finite() && e.extra.values().all(|v| v.is_finite())));
    // Same tiny net as the f32 run above with half the data: chance is 10%.
    assert!(
        m[1].extra["acc1_one_q"] > 40.0,
        "online classifier learns under bf16 autocast: {}",
        m[1].extra["acc1_one_q"]
    );
    assert!(m[1].train_loss < m[0].train_loss);
}

#[test]
fn reference_presets_differ_from_ours_only_in_the_mixer_loss() {
    // Issue 11: the released configs' η option is a no-op, so they train the Mixer with soft
    // mixup CE; each `_reference` preset is ours with exactly that change.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for name in ["cifar100_r18_samix", "cifar100_rx50_samix", "cifar100_wrn28_8_samix", "tiny_imagenet_r18_samix"] {
        let ours = TrainConfig::load(&dir.join(format!("{name}.toml")), &[]).unwrap();
        let reference = TrainConfig::load(&dir.join(format!("{name}_reference.toml")), &[]).unwrap();
        let (o, r) = (
            ours.mix.online_mixer(Scenario::Supervised).unwrap(),
            reference.mix.online_mixer(Scenario::Supervised).unwrap(),
        );
        assert_eq!(r.mixer_loss, MixupLoss::SoftCe, "{name}");
        assert_eq!(o.mixer_loss, MixupLoss::PairLocalGlobal { eta: 0.5 }, "{name}");
        let mut same = reference.clone();
        same.mix = ours.mix.clone();
        assert_eq!(same.to_toml().unwrap(), ours.to_toml().unwrap(), "{name}: only [mix.mixer_loss] may differ");
        let (mut ro, mut rr) = (o.clone(), r.clone());
        ro.mixer_loss = MixupLoss::SoftCe;
        rr.mixer_loss = MixupLoss::SoftCe;
        assert_eq!(ro, rr, "{name}: the rest of [mix] is the same");
    }
}
