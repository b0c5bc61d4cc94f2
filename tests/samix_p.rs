//! SAMix-P: a finished SAMix run's frozen encoder and Mixer as a mixing policy.
mod common;

use common::{cifar100_archive, tiny_fashion_config};
use rand::SeedableRng;
use samix::config::{MixConfig, TrainConfig};
use samix::data::{open_splits, DataConfig, DatasetKind};
use samix::mix::MixPolicy;
use samix::model::{Network, StagedNet};
use samix::optim::{OptimConfig, Optimizer};
use samix::rng::SamixRng;
use samix::samix::{PretrainedMixer, SamixP};
use samix::train::{checkpoint, eval_loader, metrics, Mixing};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn run(cfg: &TrainConfig, out: &std::path::Path) -> metrics::Summary {
    common::train_run(cfg, out, false, false, None).unwrap()
}

/// A short online SAMix run on a Fashion-MNIST slice; returns its directory (holding the Mixer
/// artifact and the last checkpoint).
fn pretrain(tmp: &std::path::Path) -> std::path::PathBuf {
    let text = tiny_fashion_config(600, 100, 1, "policy = \"samix\"\nvisual_every = 0");
    let out = tmp.join("pretrain");
    run(&TrainConfig::parse(&text, &[]).unwrap(), &out);
    assert!(out.join("mixer.json").is_file() && out.join("mixer.safetensors").is_file());
    out
}

fn a_batch(n: i64) -> (Tensor, Tensor) {
    let dc = DataConfig {
        test_limit: Some(n as usize),
        train_limit: Some(0),
        ..DataConfig::new(DatasetKind::FashionMnist, Some(common::fashion()))
    };
    let splits = open_splits(&dc).unwrap();
    let cfg = TrainConfig::parse(&tiny_fashion_config(1, n as usize, 1, "policy = \"none\""), &[]).unwrap();
    let batch = eval_loader(&cfg, splits.test, Device::Cpu).epoch(0).next().unwrap().unwrap();
    (batch.images, batch.labels)
}

#[test]
fn samix_p_reproduces_the_runs_masks_stays_frozen_and_accounts_lambda() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = pretrain(tmp.path());
    let pretrained = PretrainedMixer::load(&dir, Device::Cpu).unwrap();
    let artifact = pretrained.artifact().unwrap().clone();
    assert_eq!((artifact.in_channels, artifact.image_size, artifact.mask_stage), (1, 28, 2));
    assert!(artifact.produced_by.as_ref().is_some_and(|p| p.run_dir.ends_with("pretrain")));
    assert!(pretrained.var_store().variables().values().all(|t| !t.requires_grad()), "everything frozen");

    // The same masks as the run's own EMA encoder and Mixer (from its checkpoint), in eval mode.
    let ckpt = checkpoint::latest(&dir).unwrap().unwrap();
    let cfg = TrainConfig::load(&ckpt.config_path(), &[]).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let options = cfg.mix.online_mixer(samix::samix::Scenario::Supervised).unwrap();
    let online = common::online_samix(&vs, &cfg.model, options, 1, 10, 28);
    ckpt.load_model(&mut vs).unwrap();
    let (x, y) = a_batch(16);
    let f_run = tch::no_grad(|| online.ema.features(&x, false, &[2]).1.remove(0));
    let f = pretrained.features(&x);
    assert!(f.equal(&f_run), "the frozen encoder is the run's EMA encoder");
    let perm = Tensor::from_slice(&(0..16i64).rev().collect::<Vec<_>>());
    for lam in [0.3f32, 0.62] {
        let l = Tensor::from(lam);
        let want = tch::no_grad(|| online.mixer.mask(&f_run, &perm, &l, false));
        assert!(pretrained.mask_from_features(&f, &perm, &l).equal(&want), "λ = {lam}");
    }

    // Training a classifier through the policy leaves the frozen parts untouched and gradient-free.
    let before: Vec<(String, Tensor)> =
        pretrained.var_store().variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    let policy = SamixP::new(pretrained, 2.0, 1.0, 0.08).unwrap();
    let net_vs = VarStore::new(Device::Cpu);
    let net = Network::new(&net_vs.root(), &cfg.model, 1, 10).unwrap();
    let mut sgd = Optimizer::new(&net_vs, &OptimConfig::default());
    let mut rng = SamixRng::seed_from_u64(3);
    let mut checked_area = 0;
    for _ in 0..4 {
        let mixed = policy.mix(&x, &y, &mut rng);
        // mask_adjust = 1: the first image covers exactly λ (or λ everywhere, within the margin).
        let area = f64s(&mixed.first_weight.as_ref().unwrap().mean_dim(&[1i64, 2, 3][..], false, Kind::Double));
        let lam = f64s(&mixed.targets.lam);
        for (a, l) in area.iter().zip(&lam) {
            assert!((a - l).abs() < 1e-4, "mask area {a} vs λ {l}");
            checked_area += 1;
        }
        let loss = samix::mixup_cross_entropy(&net.forward_t(&mixed.images, true), &mixed.targets, 0.0);
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.05).unwrap();
    }
    assert_eq!(checked_area, 64);
    let after = policy.pretrained().var_store().variables();
    for (name, t) in before {
        assert!(after[&name].equal(&t), "{name} changed");
        assert!(!after[&name].grad().defined(), "{name} got a gradient");
    }
    assert!(net.stage_channels().len() == 4);
}

#[test]
fn samix_p_trains_through_the_config_and_refuses_mismatched_artifacts() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = pretrain(tmp.path());
    // A run on another slice of the data, through `[mix] policy = "samix_p"`.
    let mix = format!("policy = \"samix_p\"\nmixer = \"{}\"\nmask_adjust = 0.5", dir.display());
    let cfg = TrainConfig::parse(&tiny_fashion_config(1500, 300, 2, &mix), &[]).unwrap();
    assert!(matches!(cfg.mix, MixConfig::SamixP(_)));
    let s = run(&cfg, &tmp.path().join("transfer"));
    assert!(s.final_acc1 > 30.0, "a tiny net learns with SAMix-P masks: {}", s.final_acc1);

    // 3-channel 32-pixel CIFAR images cannot go through a 1-channel 28-pixel Mixer.
    let info = open_splits(&DataConfig {
        test_limit: Some(1),
        train_limit: Some(1),
        ..DataConfig::new(DatasetKind::Cifar100, Some(cifar100_archive()))
    })
    .unwrap()
    .train
    .info()
    .clone();
    let err = Mixing::from_config(&cfg.mix, samix::samix::Scenario::Supervised, &info, Some(32), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("1-channel 28×28") && err.contains("3-channel 32×32"), "{err}");
    // An artifact whose metadata disagrees with its weights is refused, naming the problem.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(dir.join("mixer.safetensors"), bad.join("mixer.safetensors")).unwrap();
    let json =
        std::fs::read_to_string(dir.join("mixer.json")).unwrap().replace("\"base_width\": 8", "\"base_width\": 4");
    std::fs::write(bad.join("mixer.json"), json).unwrap();
    let err = PretrainedMixer::load(&bad, Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("mixer.json") || err.contains("mixer.safetensors"), "{err}");
    // A folder without an artifact says so.
    let err = PretrainedMixer::load(tmp.path(), Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("mixer.json"), "{err}");
}

/// SAMix-P's reference route: the frozen encoder and Mixer run in train mode (the encoder's
/// features come from the batch's statistics and its running ones drift, still without a
/// gradient), and the classifier's loss gains a cross-entropy on the clean images — at a fresh
/// 10-class network about ln 10 on top of the mixup loss, which the plain route does not have.
#[test]
fn samix_p_reference_route_runs_the_frozen_parts_in_train_mode_with_a_clean_loss() {
    use samix::train::{Learner, StepContext};
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let dir = pretrain(tmp.path());
    let (x, y) = a_batch(16);
    let mut pretrained = PretrainedMixer::load(&dir, Device::Cpu).unwrap();
    let eval_features = pretrained.features(&x);
    let stat = |p: &PretrainedMixer| p.var_store().variables()["k.bn1.running_mean"].copy();
    let before = stat(&pretrained);
    pretrained.set_train_mode(true);
    let train_features = pretrained.features(&x);
    assert!(!train_features.allclose(&eval_features, 1e-4, 1e-5, false), "batch statistics, not the stored ones");
    assert!(!stat(&pretrained).equal(&before), "train mode moves the frozen encoder's running statistics");
    assert!(!train_features.requires_grad());

    let first_loss = |reference: bool| {
        let mix = format!("policy = \"samix_p\"\nmixer = \"{}\"\nreference_route = {reference}", dir.display());
        let cfg = TrainConfig::parse(&tiny_fashion_config(100, 50, 1, &mix), &[]).unwrap();
        let info = open_splits(&cfg.data).unwrap().train.info().clone();
        let mut learner = samix::train::supervised::SupervisedLearner::new(&cfg, &info, Device::Cpu).unwrap();
        let ctx = StepContext { epoch: 0, iter: 0, iters_per_epoch: 1, global_step: 0, total_steps: 1 };
        let batch = samix::data::loader::Batch { images: x.shallow_clone(), labels: y.shallow_clone() };
        learner.train_step(&batch, &ctx, &mut SamixRng::seed_from_u64(5)).unwrap().0.double_value(&[])
    };
    let extra = first_loss(true) - first_loss(false);
    assert!((extra - 10f64.ln()).abs() < 0.5, "the clean cross-entropy adds about ln 10, got {extra}");
}
