//! What every parity case shares: the step's shapes and tolerances, the supervised SAMix step
//! written out for the oracle, the comparison with what the oracle wrote.
use super::common;
use samix::config::{MixConfig, TrainConfig};
use samix::data::loader::Batch;
use samix::data::DatasetInfo;
use samix::samix::Draws;
use samix::train::{Learner, Mixing, SamixLearner, StepContext};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const SIDE: i64 = 32;
/// Both sides run the step in f64 (see the module comment).
pub const KIND: Kind = Kind::Double;
pub const BATCH: i64 = 8;

/// Relative tolerance of a value (loss, mask, key, weight or statistic after the step), beside
/// the absolute floor `ATOL`. Observed in f64: ≤ 2e-15 of the largest value on losses, masks and
/// keys, ≤ 4e-11 elementwise on weights (those within a few ulps of 0 set that figure). A broken
/// detail (see `oracle_with_a_broken_detail_disagrees`) moves these quantities by 1e-3 or more.
pub const RTOL: f64 = 1e-8;
pub const ATOL: f64 = 1e-11;

/// Tolerance of a tensor's change over the step relative to the oracle's largest change in it.
/// Observed in f64: ≤ 1e-11 where the change is the SGD step; the EMA copy's changes (~1e-8 of
/// its weights) are met within one ulp of the weights, which the ulp term covers. A skipped EMA,
/// an EMA over BN statistics or a wrong BN update order move a change by tens of percent.
pub const UPDATE_RTOL: f64 = 1e-6;

pub fn preset(file: &str, sets: &[&str]) -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    TrainConfig::parse(&text, &sets).unwrap()
}

pub fn cifar100_info() -> DatasetInfo {
    DatasetInfo {
        name: "cifar100".into(),
        num_classes: 100,
        channels: 3,
        mean: vec![0.5071, 0.4865, 0.4409],
        std: vec![0.2673, 0.2564, 0.2762],
        class_names: Vec::new(),
    }
}

pub fn perm(v: &[i64]) -> Tensor {
    Tensor::from_slice(v)
}

pub fn save(path: &Path, named: Vec<(String, Tensor)>) {
    Tensor::write_safetensors(&named, path).unwrap();
}

pub fn named(vs: &tch::nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    vars.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t.detach().copy())).collect()
}

/// One samix step on `cfg` with draws `d`, written into `dir` for the oracle: `init.safetensors`
/// (every variable before), `step.safetensors` (images, labels, draws), `step.json` (the step's
/// settings), `samix.safetensors` (loss terms, masks, every variable after).
pub fn samix_step(cfg: &TrainConfig, d: Draws, dir: &Path) {
    let _rng = common::torch_rng_lock();
    let info = cifar100_info();
    let (config, options) = match Mixing::from_config(
        &cfg.mix,
        samix::samix::Scenario::Supervised,
        &info,
        Some(SIDE),
        Device::Cpu,
    )
    .unwrap()
    {
        Mixing::Online { config, options } => (config, options),
        _ => panic!("the preset is not online SAMix"),
    };
    let mut learner = SamixLearner::new(cfg, &config, options.clone(), &info, SIDE, Device::Cpu).unwrap();
    learner.vs.double();
    // At initialisation the Mixer's query/key weights (N(0, 0.01²)) make its attention nearly
    // uniform, so its mask barely depends on λ and the attention's gradients are ~1e-6; scaled
    // up, the step exercises them (a λ-encoding slip then moves the mask by ~1e-2, not 2e-5).
    tch::no_grad(|| {
        for (name, mut t) in learner.vs.variables() {
            if name == "mixer.query.weight" || name == "mixer.key.weight" {
                let _ = t.g_mul_scalar_(20.0);
            }
        }
    });
    save(&dir.join("init.safetensors"), named(&learner.vs, ""));

    tch::manual_seed(11);
    let x = Tensor::randn([BATCH, 3, SIDE, SIDE], (KIND, Device::Cpu));
    let y = Tensor::randint(100, [BATCH], (Kind::Int64, Device::Cpu));
    let step = vec![
        ("x".to_string(), x.copy()),
        ("y".to_string(), y.copy()),
        ("lam_mb".to_string(), d.lam_mb.copy()),
        ("lam_bb".to_string(), d.lam_bb.copy()),
        ("perm_mb".to_string(), d.perm_mb.copy()),
        ("perm_bb".to_string(), d.perm_bb.copy()),
        ("adjust_bb".to_string(), d.adjust_bb.copy()),
    ];
    save(&dir.join("step.safetensors"), step);

    let iters_per_epoch = 500;
    let total_steps = (cfg.train.epochs * iters_per_epoch) as u64;
    let ctx = StepContext { epoch: 0, iter: 0, iters_per_epoch, global_step: 0, total_steps };
    let ema_momentum = learner.samix.ema_momentum(0, total_steps);
    let mixer_optim = config.mixer_optim.optim(&cfg.optim);
    let mut settings = optimiser_settings(cfg, &mixer_optim);
    let more = serde_json::json!({
        "ema_momentum": ema_momentum,
        "label_smoothing": cfg.train.label_smoothing,
        "mix": match &cfg.mix { MixConfig::Samix(c) => serde_json::to_value(c).unwrap(), MixConfig::Automix(c) => serde_json::to_value(c).unwrap(), _ => unreachable!() },
        "mixer_variant": format!("{:?}", options.mixer.variant).to_lowercase(),
    });
    merge(&mut settings, more);
    backbone_and_optimiser_settings(cfg, &mut settings);
    std::fs::write(dir.join("step.json"), serde_json::to_string_pretty(&settings).unwrap()).unwrap();

    let batch = Batch { images: x, labels: y };
    let (losses, _lr) = learner.step_with(&batch, &d, &ctx).unwrap();
    let mut out = named(learner.var_store(), "after.");
    for (name, t) in [
        ("loss_one_q", &losses.one_q),
        ("loss_mix_q", &losses.mix_q),
        ("loss_mix_k", &losses.mix_k),
        ("loss_mask", &losses.mask),
        ("s_mb", &losses.s_mb),
        ("s_bb", &losses.s_bb),
    ] {
        out.push((name.to_string(), t.detach().copy()));
    }
    save(&dir.join("samix.safetensors"), out);
}

/// Runs the oracle on `dir` (with `--break DETAIL` when given) and returns, per quantity the
/// samix side wrote, the largest excess of the difference over its tolerance (≤ 0 = agrees),
/// with the number of quantities compared. Every weight and statistic after the step is
/// compared twice: as a value (`after.*`), and as its change over the step (`update.*`) relative
/// to the oracle's change, which sees updates far below the values' own tolerance (the EMA's
/// 1e-6 steps, the Mixer's attention weights).
pub fn compare(dir: &Path, broken: Option<&str>) -> (BTreeMap<String, f64>, usize) {
    compare_with(dir, "samix_step.py", broken)
}

/// As [`compare`], with the oracle script `script`.
pub fn compare_with(dir: &Path, script: &str, broken: Option<&str>) -> (BTreeMap<String, f64>, usize) {
    let mut args = vec![common::oracle_script(script).into_os_string(), dir.as_os_str().to_owned()];
    if let Some(detail) = broken {
        args.extend(["--break".into(), detail.into()]);
    }
    common::venv_python(&args);
    let read = |file: &str| -> BTreeMap<String, Tensor> {
        Tensor::read_safetensors(dir.join(file)).unwrap().into_iter().collect()
    };
    let (ours, theirs, init) = (read("samix.safetensors"), read("oracle.safetensors"), read("init.safetensors"));
    let mut excess = BTreeMap::new();
    for (name, a) in &ours {
        let b = theirs.get(name).unwrap_or_else(|| panic!("the oracle did not write `{name}`"));
        assert_eq!(a.size(), b.size(), "`{name}`: shapes differ");
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        let allowed = b.abs() * RTOL + ATOL;
        excess.insert(name.clone(), ((&a - &b).abs() - allowed).max().double_value(&[]));
        if let Some(start) = name.strip_prefix("after.").and_then(|n| init.get(n)) {
            let start = start.to_kind(Kind::Double);
            let (da, db) = (&a - &start, &b - &start);
            // UPDATE_RTOL of the oracle's largest change, plus 16 f64 ulps of the largest value
            // (the rounding of `after` itself, which the two sides' EMA formulas round
            // differently), plus 1e-13 for changes that are zero in exact arithmetic and rounding
            // noise here (the attention key's bias: a softmax ignores a shift shared by its whole
            // row, so its gradient is ~1e-20 of noise; SGD moves it by ~1e-20, AdamW, which
            // divides by the gradient's size, by lr·g/(|g| + ε): ~3e-15 on both sides, unequal).
            let scale = db.abs().max().double_value(&[]);
            let ulps = 16.0 * f64::EPSILON * b.abs().max().double_value(&[]);
            let worst = (&da - &db).abs().max().double_value(&[]) - (UPDATE_RTOL * scale + ulps + 1e-13);
            excess.insert(format!("update.{}", &name["after.".len()..]), worst);
        }
    }
    (excess, ours.len())
}

/// Where a case's files go: a temporary folder, or `$SAMIX_PARITY_KEEP/<case>` (kept) when set,
/// to run the oracle on them by hand.
pub fn work_dir(case: &str) -> WorkDir {
    match std::env::var_os("SAMIX_PARITY_KEEP") {
        Some(root) => {
            let dir = Path::new(&root).join(case.replace('+', "_"));
            std::fs::create_dir_all(&dir).unwrap();
            WorkDir::Kept(dir)
        }
        None => WorkDir::Temp(tempfile::tempdir().unwrap()),
    }
}

pub enum WorkDir {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        match self {
            WorkDir::Temp(t) => t.path(),
            WorkDir::Kept(p) => p,
        }
    }
}

pub fn disagreeing(excess: &BTreeMap<String, f64>) -> Vec<String> {
    excess.iter().filter(|(_, &e)| e > 0.0 || e.is_nan()).map(|(n, e)| format!("{n} (by {e:.3e})")).collect()
}

/// The step's backbone (a ViT with its head count, or the ResNet) and optimiser (AdamW with its
/// constants and parameter-wise decay rule, or SGD) for the oracle.
fn backbone_and_optimiser_settings(cfg: &TrainConfig, settings: &mut serde_json::Value) {
    if cfg.model.arch.family() == samix::model::Family::Vit {
        settings["backbone"] = "vit".into();
        settings["vit_heads"] = cfg.model.vit_config(3, 100).unwrap().num_heads.into();
    }
    if cfg.optim.kind == samix::optim::OptimKind::Adamw {
        let h = cfg.optim.adamw_hyper();
        settings["optimizer"] = "adamw".into();
        settings["betas"] = serde_json::json!([h.beta1, h.beta2]);
        settings["eps"] = h.eps.into();
        settings["no_decay_1d"] = cfg.optim.no_decay_1d.into();
        settings["no_decay_names"] = serde_json::json!(cfg.optim.no_decay_names);
    }
}

/// The step's settings both oracles read: f64, and each parameter group's optimiser (the first
/// step of a cosine schedule runs at the base rates).
pub fn optimiser_settings(cfg: &TrainConfig, mixer_optim: &samix::optim::OptimConfig) -> serde_json::Value {
    serde_json::json!({
        "dtype": "float64",
        "lr": cfg.optim.lr,
        "momentum": cfg.optim.momentum(),
        "weight_decay": cfg.optim.weight_decay,
        "nesterov": cfg.optim.nesterov(),
        "mixer_lr": mixer_optim.lr,
        "mixer_momentum": mixer_optim.momentum(),
        "mixer_weight_decay": mixer_optim.weight_decay,
    })
}

/// `into` with the keys of `more` added.
pub fn merge(into: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(more)) = (into.as_object_mut(), more) {
        into.extend(more);
    }
}
