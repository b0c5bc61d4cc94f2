//! The self-supervised case: one SAMix-SSL step (MoCo v2 + SAMix) against
//! tests/oracle/samix_ssl_step.py.
use super::common;
use super::harness::{
    cifar100_info, compare_with, disagreeing, merge, named, optimiser_settings, perm, preset, save, work_dir, BATCH,
    KIND, SIDE,
};
use samix::config::{MixConfig, TrainConfig};
use samix::ssl::SslDraws;
use samix::train::{Learner, SslLearner, StepContext};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// One SAMix-SSL step (MoCo v2 + SAMix on two views: momentum update, keys of both views in
/// shuffled sub-batches, both branches, the four losses, SGD on both groups, enqueue) on chosen
/// draws, written into `dir` as [`samix_step`] does, for `tests/oracle/samix_ssl_step.py`.
/// The key side starts a little off the query side so that the momentum update shows.
fn samix_ssl_step(cfg: &TrainConfig, d: SslDraws, dir: &Path) {
    let _rng = common::torch_rng_lock();
    let info = cifar100_info();
    let ssl = cfg.ssl.clone().unwrap();
    let images = vec![0u8; 4 * 3 * 32 * 32];
    let bank_data = samix::data::InMemoryDataset::new(info.clone(), 32, 32, images, vec![0, 1, 2, 3]);
    let bank = samix::train::eval_loader(cfg, std::sync::Arc::new(bank_data), Device::Cpu);
    let mut learner = SslLearner::new(cfg, &ssl, &info, bank, Device::Cpu).unwrap();
    learner.vs.double();
    tch::manual_seed(12);
    tch::no_grad(|| {
        for (name, mut t) in learner.vs.variables() {
            if name == "mixer.query.weight" || name == "mixer.key.weight" {
                let _ = t.g_mul_scalar_(20.0);
            }
            if name.starts_with("k.") && !name.ends_with("running_mean") && !name.ends_with("running_var") {
                let _ = t.g_add_(&(t.randn_like() * 0.01));
            }
        }
    });
    save(&dir.join("init.safetensors"), named(&learner.vs, ""));
    tch::manual_seed(13);
    let x = Tensor::randn([BATCH, 2, 3, SIDE, SIDE], (KIND, Device::Cpu));
    let step = vec![
        ("x1".to_string(), x.select(1, 0).copy()),
        ("x2".to_string(), x.select(1, 1).copy()),
        ("key_shuffle".to_string(), d.key_shuffle.copy()),
        ("lam_mb".to_string(), d.lam_mb.copy()),
        ("lam_bb".to_string(), d.lam_bb.copy()),
        ("perm_mb".to_string(), d.perm_mb.copy()),
        ("perm_bb".to_string(), d.perm_bb.copy()),
        ("adjust_bb".to_string(), d.adjust_bb.copy()),
        ("pos_extend".to_string(), d.pos_extend.copy()),
    ];
    save(&dir.join("step.safetensors"), step);
    let ctx = StepContext { epoch: 0, iter: 0, iters_per_epoch: 100, global_step: 0, total_steps: 100 };
    let mixer_optim = cfg.mix.online_config().unwrap().0.mixer_optim.optim(&cfg.optim);
    let mut settings = optimiser_settings(cfg, &mixer_optim);
    let more = serde_json::json!({
        "key_momentum": ssl.momentum_at(0, 100),
        "queue_position": 0,
        "ssl": ssl_settings(&ssl, &cfg.mix),
        "mix": serde_json::to_value(cfg.mix.online_config().unwrap().0).unwrap(),
    });
    merge(&mut settings, more);
    std::fs::write(dir.join("step.json"), serde_json::to_string_pretty(&settings).unwrap()).unwrap();
    let batch = samix::data::loader::Batch { images: x, labels: Tensor::zeros([BATCH], (Kind::Int64, Device::Cpu)) };
    let mut rng = samix::rng::stream(0, samix::rng::Stream::Mix, 0, 0);
    let (losses, _) = learner.step_with(&batch, &d, &ctx, &mut rng).unwrap();
    let mut out = named(learner.var_store(), "after.");
    for (name, t) in [
        ("loss_moco", Some(&losses.moco)),
        ("loss_mix", losses.mix.as_ref()),
        ("loss_mixer", losses.mixer.as_ref()),
        ("loss_mask", losses.mask.as_ref()),
        ("s_mb", losses.s_mb.as_ref()),
        ("s_bb", losses.s_bb.as_ref()),
        ("keys", Some(&losses.keys)),
    ] {
        out.push((name.to_string(), t.unwrap().detach().copy()));
    }
    save(&dir.join("samix.safetensors"), out);
}

fn ssl_draws(lam_mb: f32, lam_bb: f32) -> SslDraws {
    SslDraws {
        key_shuffle: perm(&[9, 3, 14, 0, 7, 12, 1, 5, 15, 2, 10, 8, 4, 13, 6, 11]),
        lam_mb: Tensor::from(f64::from(lam_mb)),
        lam_bb: Tensor::from(f64::from(lam_bb)),
        perm_mb: perm(&[3, 0, 1, 7, 2, 6, 4, 5]),
        perm_bb: perm(&[5, 2, 4, 0, 7, 1, 3, 6]),
        adjust_bb: Tensor::from(0f64),
        pos_extend: Tensor::zeros([0], (KIND, Device::Cpu)),
    }
}

fn ssl_preset() -> TrainConfig {
    // The CIFAR-100 SAMix-SSL preset at a batch of 8 (sub-batches of 4 for the 16 keys) and a
    // queue of 64.
    preset("cifar100_r18_moco_samix.toml", &["train.batch_size=8", "ssl.queue_size=64"])
}

#[test]
fn samix_ssl_step_matches_the_pytorch_oracle() {
    let dir = work_dir("ssl");
    // λ_bb = 0.6 leaves some samples' masks within mean_margin of λ and rescales the others.
    samix_ssl_step(&ssl_preset(), ssl_draws(0.37, 0.6), dir.path());
    let (excess, n) = compare_with(dir.path(), "samix_ssl_step.py", None);
    assert!(n > 200, "only {n} quantities compared");
    let bad = disagreeing(&excess);
    assert!(bad.is_empty(), "samix and the PyTorch oracle disagree on {bad:?}");
    for (detail, must_differ) in
        [("leaky_positive", "loss_mix"), ("mask_not_detached", "after.mixer."), ("no_momentum", "after.k.")]
    {
        let (excess, _) = compare_with(dir.path(), "samix_ssl_step.py", Some(detail));
        let bad = disagreeing(&excess);
        assert!(
            bad.iter().any(|b| b.starts_with(must_differ)),
            "breaking `{detail}` in the oracle went unnoticed on {must_differ}* (differences: {bad:?})"
        );
    }
}

/// The reference's Mixer loss (global + 0.5·local, the local term's positives extended), on
/// blend weights drawn as a run draws them (extrapolation: `u` in [1, 2]); the oracle must catch
/// a partner positive taken from the wrong row.
#[test]
fn samix_ssl_step_with_the_reference_mixer_loss_matches_the_oracle() {
    let dir = work_dir("ssl_reference_loss");
    let cfg = preset(
        "cifar100_r18_moco_samix.toml",
        &[
            "train.batch_size=8",
            "ssl.queue_size=64",
            "mix.mixer_loss.kind=global_local",
            "mix.mixer_loss.eta=0.5",
            "mix.mixer_loss.pos_extend=extrapolation",
        ],
    );
    let mut d = ssl_draws(0.37, 0.6);
    let dim = cfg.ssl.as_ref().unwrap().feature_dim;
    d.pos_extend = (Tensor::rand([BATCH, dim], (KIND, Device::Cpu)) + 1.0).to_kind(KIND);
    samix_ssl_step(&cfg, d, dir.path());
    let (excess, n) = compare_with(dir.path(), "samix_ssl_step.py", None);
    assert!(n > 200, "only {n} quantities compared");
    let bad = disagreeing(&excess);
    assert!(bad.is_empty(), "samix and the PyTorch oracle disagree on {bad:?}");
    let (excess, _) = compare_with(dir.path(), "samix_ssl_step.py", Some("pos_extend_unpermuted"));
    let bad = disagreeing(&excess);
    assert!(
        bad.iter().any(|b| b.starts_with("loss_mixer")),
        "a wrong partner positive went unnoticed (differences: {bad:?})"
    );
}

/// The oracle's `ssl` settings: MoCo's keys and SAMix-SSL's, the latter resolved from `[mix]`.
fn ssl_settings(ssl: &samix::ssl::SslConfig, mix: &MixConfig) -> serde_json::Value {
    let (c, variant) = mix.online_config().unwrap();
    let o = c.resolve(variant, samix::samix::Scenario::SelfSupervised);
    let mut json = serde_json::to_value(ssl).unwrap();
    let (loss, eta) = match o.contrastive_loss {
        samix::samix::ContrastiveLoss::Global => ("global", 0.0),
        samix::samix::ContrastiveLoss::Local => ("local", 0.0),
        samix::samix::ContrastiveLoss::LocalGlobal { eta } => ("local_global", eta),
        samix::samix::ContrastiveLoss::GlobalLocal { eta, .. } => ("global_local", eta),
    };
    json["mixer_loss"] = loss.into();
    json["eta"] = eta.into();
    json["pos_extend"] = o.contrastive_loss.pos_extend().is_some().into();
    json["mask_adjust"] = if o.area_margin.is_some() { "auto" } else { "probability" }.into();
    json["mean_margin"] = o.area_margin.unwrap_or(0.0).into();
    json
}
