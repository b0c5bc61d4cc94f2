//! Linear evaluation: one step of the linear probe on a frozen pre-trained ResNet against
//! tests/oracle/linear_probe_step.py, with the backbone's BatchNorm in eval mode (samix's
//! default) and in train mode (`train.probe_bn = "train"`, the reference's protocol: batch
//! statistics, running statistics updated, nothing but the classifier trained).
use super::common;
use super::harness::{compare_with, disagreeing, named, preset, save, work_dir, BATCH, KIND, SIDE};
use samix::config::ProbeBn;
use samix::train::supervised::SupervisedLearner;
use samix::train::{Learner, StepContext};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// One probe step of the linear preset (a narrow ResNet-18 so the f64 step stays quick) from a
/// backbone file with random weights and BN statistics, written into `dir` for the oracle.
fn probe_step(probe_bn: &str, dir: &Path) {
    let _rng = common::torch_rng_lock();
    let info = super::harness::cifar100_info();
    let mut cfg = preset("cifar100_r18_linear.toml", &["train.batch_size=8", "model.base_width=8"]);
    cfg.train.linear_probe = true;
    cfg.train.probe_bn = if probe_bn == "train" { ProbeBn::Train } else { ProbeBn::Eval };
    tch::manual_seed(21);
    let pretrained = tch::nn::VarStore::new(Device::Cpu);
    let _net = samix::model::Network::new(&pretrained.root(), &cfg.model, 3, 100).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in pretrained.variables() {
            if name.ends_with("running_var") {
                t.copy_(&(t.rand_like() + 0.5));
            } else if name.ends_with("running_mean") || name.contains("bn") {
                let _ = t.g_add_(&(t.randn_like() * 0.1));
            }
        }
    });
    let backbone = dir.join("backbone.safetensors");
    save(&backbone, named(&pretrained, ""));
    cfg.model.init_from = Some(backbone);
    cfg.validate().unwrap();
    let mut learner = SupervisedLearner::new(&cfg, &info, Device::Cpu).unwrap();
    learner.var_store_mut().double();
    save(&dir.join("init.safetensors"), named(learner.var_store(), ""));
    tch::manual_seed(22);
    let x = Tensor::randn([BATCH, 3, SIDE, SIDE], (KIND, Device::Cpu));
    let y = Tensor::randint(100, [BATCH], (Kind::Int64, Device::Cpu));
    save(&dir.join("step.safetensors"), vec![("x".into(), x.copy()), ("y".into(), y.copy())]);
    let ctx = StepContext { epoch: 0, iter: 0, iters_per_epoch: 10, global_step: 0, total_steps: 1000 };
    let batch = samix::data::loader::Batch { images: x, labels: y };
    let mut rng = samix::rng::stream(0, samix::rng::Stream::Mix, 0, 0);
    let (loss, lr) = learner.train_step(&batch, &ctx, &mut rng).unwrap();
    let settings = serde_json::json!({
        "dtype": "float64",
        "lr": lr,
        "momentum": cfg.optim.momentum(),
        "weight_decay": cfg.optim.weight_decay,
        "nesterov": cfg.optim.nesterov(),
        "probe_bn": probe_bn,
    });
    std::fs::write(dir.join("step.json"), settings.to_string()).unwrap();
    let mut out = named(learner.var_store(), "after.");
    out.push(("loss".into(), loss.copy()));
    save(&dir.join("samix.safetensors"), out);
}

#[test]
fn linear_probe_steps_match_the_pytorch_oracle_in_both_bn_modes() {
    for mode in ["eval", "train"] {
        let dir = work_dir(&format!("linear_{mode}"));
        probe_step(mode, dir.path());
        let (excess, n) = compare_with(dir.path(), "linear_probe_step.py", None);
        assert!(n > 50, "only {n} quantities compared");
        let bad = disagreeing(&excess);
        assert!(bad.is_empty(), "probe_bn = {mode}: samix and the oracle disagree on {bad:?}");
        // The other mode in the oracle: train-mode BN moves the running statistics and the loss.
        let (excess, _) = compare_with(dir.path(), "linear_probe_step.py", Some("other_bn_mode"));
        let bad = disagreeing(&excess);
        for must_differ in ["loss", "after.layer1.0.bn1.running_mean"] {
            assert!(
                bad.iter().any(|b| b.starts_with(must_differ)),
                "probe_bn = {mode}: the other BN mode went unnoticed on {must_differ} (differences: {bad:?})"
            );
        }
    }
}
