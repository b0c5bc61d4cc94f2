//! Supervised training with a handcrafted mixing policy: the run directory, the epoch loop
//! (loader → policy → model → mixup CE → SGD), evaluation every epoch, metrics, checkpoints and
//! exact resume. Owns the run directory; reads data only through the loader.
pub mod checkpoint;
pub mod eval;
pub mod metrics;
pub mod schedule;
pub mod samix;
pub mod sgd;
pub mod visual;

use crate::config::TrainConfig;
use crate::data::loader::{Loader, LoaderConfig};
use crate::data::transform::Pipeline;
use crate::data::{open_splits, Dataset};
use crate::loss::mixup_cross_entropy;
use crate::data::loader::Batch;
use crate::mix::{MixPolicy, Policy};
use crate::rng::SamixRng;
use std::collections::BTreeMap;
use crate::model::Network;
use crate::rng::{stream, Stream};
use crate::{Error, Result};
use checkpoint::CheckpointState;
use metrics::{EpochMetrics, Summary};
use schedule::CosineSchedule;
use sgd::Sgd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// How often (in steps) the loss is read back to the host for the progress display.
const LOG_EVERY: usize = 20;

pub struct RunOptions {
    pub config: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub force: bool,
    pub device: Device,
    /// Draw a progress bar (interactive use).
    pub progress: bool,
    /// Train at most this many epochs in this call, then stop with a checkpoint, leaving a run
    /// that `--resume` continues (for time-limited job slots).
    pub stop_after: Option<usize>,
}

/// Where a training step is in the run.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    pub epoch: usize,
    pub iter: usize,
    pub iters_per_epoch: usize,
    /// Steps taken before this one, over the whole run.
    pub global_step: u64,
    pub total_steps: u64,
}

/// What the common loop needs from a way of training (handcrafted policy, online SAMix).
pub trait Learner {
    fn var_store(&self) -> &VarStore;
    fn var_store_mut(&mut self) -> &mut VarStore;
    fn optimizer(&self) -> &Sgd;
    fn optimizer_mut(&mut self) -> &mut Sgd;
    /// One optimisation step; returns the detached scalar loss (on the device) and the
    /// backbone's learning rate.
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)>;
    fn evaluate(&self, loader: &Loader) -> Result<eval::Evaluation>;
    /// Extra per-epoch figures for `metrics.jsonl` (loss components); resets them.
    fn epoch_extras(&mut self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    fn on_epoch_end(&mut self, _epoch: usize, _total_epochs: usize, _out: &Path) -> Result<()> {
        Ok(())
    }
    fn on_finish(&mut self, _out: &Path) -> Result<()> {
        Ok(())
    }
}

/// Seeds libtorch's generator (weight init) from the run seed.
pub fn seed_init(seed: u64) {
    tch::manual_seed((rand::RngCore::next_u64(&mut stream(seed, Stream::Init, 0, 0)) >> 1) as i64);
}

/// A classifier with its variables, built from a config for a dataset.
pub struct Model {
    pub vs: VarStore,
    pub net: Network,
}

impl Model {
    /// Builds the network with weights drawn from the run seed.
    pub fn build(cfg: &TrainConfig, info: &crate::data::DatasetInfo, device: Device) -> Result<Model> {
        Self::build_at(cfg, info, device, None)
    }

    /// As [`Model::build`], with the variables named under `prefix` (`k` = SAMix's EMA network).
    pub fn build_at(cfg: &TrainConfig, info: &crate::data::DatasetInfo, device: Device, prefix: Option<&str>) -> Result<Model> {
        seed_init(cfg.seed);
        let vs = VarStore::new(device);
        let root = match prefix {
            Some(p) => vs.root() / p,
            None => vs.root(),
        };
        let net = Network::new(&root, &cfg.model, info.channels as i64, info.num_classes as i64)?;
        Ok(Model { vs, net })
    }

    /// A frozen classifier from a samix run or checkpoint folder (for AttentiveMix+): its config
    /// gives the architecture; channels and classes come from the saved weights.
    pub fn load_frozen(dir: &Path, device: Device) -> Result<(VarStore, Network)> {
        let ckpt = checkpoint::open(dir)?;
        let cfg = TrainConfig::load(&ckpt.config_path(), &[])?;
        let weights = ckpt.dir.join(checkpoint::MODEL_FILE);
        let tensors = Tensor::read_safetensors(&weights).map_err(|e| Error::data(&weights, e.to_string()))?;
        let prefix = Self::deployed_prefix(&cfg).map_or(String::new(), |p| format!("{p}."));
        let shape = |name: &str| {
            let key = format!("{prefix}{name}");
            tensors.iter().find(|(n, _)| *n == key).map(|(_, t)| t.size()).ok_or_else(|| Error::data(&weights, format!("no `{key}` in the checkpoint")))
        };
        let (classes, channels) = (shape("fc.weight")?[0], shape("conv1.weight")?[1]);
        let info = crate::data::DatasetInfo {
            name: "frozen".into(),
            num_classes: classes as usize,
            channels: channels as usize,
            mean: vec![],
            std: vec![],
            class_names: vec![],
        };
        let model = Self::from_checkpoint(&ckpt, &cfg, &info, device)?;
        Ok((model.vs, model.net))
    }

    /// Where a run's deployed classifier lives in its checkpoint: at the root, or for online
    /// SAMix/AutoMix under `k` (the EMA network with its clean-image head, `one_k`).
    fn deployed_prefix(cfg: &TrainConfig) -> Option<&'static str> {
        cfg.mix.online_mixer().map(|_| "k")
    }

    /// The classifier a checkpoint deploys (see [`Model::deployed_prefix`]).
    pub fn from_checkpoint(ckpt: &checkpoint::Checkpoint, cfg: &TrainConfig, info: &crate::data::DatasetInfo, device: Device) -> Result<Model> {
        let mut model = Self::build_at(cfg, info, device, Self::deployed_prefix(cfg))?;
        ckpt.load_model(&mut model.vs)?;
        Ok(model)
    }
}

/// How a supervised step mixes: on the input batch, inside the network, or guided by the
/// model's input-gradient saliency.
pub enum Mixing {
    Input(Policy),
    Feature(crate::mix::FeatureMix),
    Saliency(crate::mix::PuzzleMix),
}

/// `√(mean_c (∂CE/∂x)²)` of `net` in eval mode (`N×H×W`), without touching parameter gradients.
pub fn input_saliency(net: &Network, images: &Tensor, labels: &Tensor) -> Tensor {
    let x = images.detach().set_requires_grad(true);
    let loss = crate::loss::cross_entropy(&net.forward_t(&x, false), labels, 0.0);
    let grad = Tensor::run_backward(&[&loss], &[&x], false, false).remove(0);
    grad.square().mean_dim(1, false, Kind::Float).sqrt()
}

/// Training with a handcrafted mixing policy and mixup CE.
pub struct SupervisedLearner {
    model: Model,
    mixing: Mixing,
    sgd: Sgd,
    schedule: CosineSchedule,
    smoothing: f64,
    precision: crate::native::Precision,
}

impl SupervisedLearner {
    pub fn new(cfg: &TrainConfig, info: &crate::data::DatasetInfo, device: Device) -> Result<Self> {
        let mixing = match (&cfg.mix, cfg.mix.feature_mix()?) {
            (crate::config::MixConfig::Puzzlemix(p), _) => Mixing::Saliency(crate::mix::PuzzleMix::new(p.clone(), info.mean.clone(), info.std.clone())?),
            (_, Some(f)) => Mixing::Feature(f),
            (_, None) => Mixing::Input(Policy::from_config_on(&cfg.mix, device)?),
        };
        let model = Model::build(cfg, info, device)?;
        let sgd = Sgd::new(&model.vs, &cfg.optim);
        let schedule = CosineSchedule::new(cfg.optim.lr, cfg.train.epochs, &cfg.schedule);
        Ok(SupervisedLearner { model, mixing, sgd, schedule, smoothing: cfg.train.label_smoothing, precision: cfg.train.precision })
    }
}

impl Learner for SupervisedLearner {
    fn var_store(&self) -> &VarStore {
        &self.model.vs
    }
    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.model.vs
    }
    fn optimizer(&self) -> &Sgd {
        &self.sgd
    }
    fn optimizer_mut(&mut self) -> &mut Sgd {
        &mut self.sgd
    }
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)> {
        let lr = self.schedule.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let forward_and_loss = || -> Result<Tensor> {
            let (logits, targets) = match &self.mixing {
                Mixing::Input(policy) => {
                    let mixed = policy.mix(&batch.images, &batch.labels, rng);
                    (self.model.net.forward_t(&mixed.images, true), mixed.targets)
                }
                Mixing::Feature(f) => {
                    let out = f.forward(&self.model.net, &batch.images, &batch.labels, true, rng)?;
                    (out.logits, out.targets)
                }
                Mixing::Saliency(p) => {
                    let saliency = input_saliency(&self.model.net, &batch.images, &batch.labels);
                    let mixed = p.mix_with_saliency(&batch.images, &batch.labels, &saliency, rng);
                    (self.model.net.forward_t(&mixed.images, true), mixed.targets)
                }
            };
            Ok(mixup_cross_entropy(&logits, &targets, self.smoothing))
        };
        let loss = crate::native::with_precision(self.precision, batch.images.device(), true, forward_and_loss)??;
        self.sgd.zero_grad();
        loss.backward();
        self.sgd.step(lr)?;
        Ok((loss.detach(), lr))
    }
    fn evaluate(&self, loader: &Loader) -> Result<eval::Evaluation> {
        let r = eval::evaluate(&self.model.net, loader)?;
        Ok(eval::Evaluation { primary: r, heads: BTreeMap::new() })
    }
}

pub fn train_pipeline(cfg: &TrainConfig, info: &crate::data::DatasetInfo) -> Pipeline {
    Pipeline::train(&cfg.data.augment, cfg.data.dataset.native_size(), &info.mean, &info.std)
}

/// The training loader of a config: shuffled, last partial batch dropped, its augmentations.
pub fn train_loader(cfg: &TrainConfig, train: Arc<dyn Dataset>, device: Device) -> Loader {
    let info = train.info().clone();
    let lc = LoaderConfig {
        batch_size: cfg.train.batch_size,
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        shuffle: true,
        drop_last: true,
        seed: cfg.seed,
    };
    Loader::new(train, train_pipeline(cfg, &info), lc, device)
}

pub fn eval_loader(cfg: &TrainConfig, test: Arc<dyn Dataset>, device: Device) -> Loader {
    let info = test.info().clone();
    let pipeline = Pipeline::eval(&cfg.data.augment, &info.mean, &info.std);
    let lc = LoaderConfig {
        batch_size: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        shuffle: false,
        drop_last: false,
        seed: cfg.seed,
    };
    Loader::new(test, pipeline, lc, device)
}

/// Prepares the run directory: new, resumed, or replaced with `--force`.
fn prepare_run_dir(out: &Path, resume: bool, force: bool) -> Result<()> {
    if out.exists() && !resume {
        let is_empty = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_none();
        if !is_empty {
            if !force {
                return Err(Error::run(out, "run directory exists; pass --resume to continue it or --force to replace it"));
            }
            let looks_like_run = ["config.toml", "metrics.jsonl", "checkpoints"].iter().any(|f| out.join(f).exists());
            if !looks_like_run {
                return Err(Error::run(out, "--force refuses to delete a non-empty folder that is not a samix run"));
            }
            std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
    }
    if resume && !out.join("checkpoints").join("latest").exists() {
        return Err(Error::run(out, "--resume: no checkpoint found (checkpoints/latest)"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))
}

/// The side of the (square) images the model sees.
pub fn image_side(cfg: &TrainConfig) -> Option<i64> {
    cfg.data.augment.image_size.or(cfg.data.dataset.native_size()).map(|s| s as i64)
}

/// Trains as the options say and returns the run summary (also written to `summary.json`).
pub fn run(opts: RunOptions) -> Result<Summary> {
    let RunOptions { mut config, out, resume, force, device, progress, stop_after } = opts;
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads as i32);
    }
    crate::device::prepare(device);
    // Record where the data really is, so resume and eval read the same files.
    let data_path = crate::data::resolve_path(&config.data)?;
    config.data.path = Some(data_path.canonicalize().unwrap_or(data_path));
    let splits = open_splits(&config.data)?;
    let info = splits.train.info().clone();
    if splits.train.len() < config.train.batch_size {
        return Err(Error::config(
            "train.batch_size",
            format!("{} is larger than the training set ({} images)", config.train.batch_size, splits.train.len()),
        ));
    }
    let test_loader = eval_loader(&config, splits.test.clone(), device);
    let mut learner: Box<dyn Learner> = match config.mix.online_mixer() {
        Some(resolved) => {
            let side = image_side(&config).ok_or_else(|| Error::config("data.augment.image_size", "needed for SAMix"))?;
            let mut l = samix::SamixLearner::new(&config, resolved, &info, side, device)?;
            if let Some(first) = test_loader.epoch(0).next() {
                let first = first?;
                let n = first.len().min(8) as i64;
                l.set_visual_batch(first.images.narrow(0, 0, n), info.mean.clone(), info.std.clone());
            }
            Box::new(l)
        }
        None => Box::new(SupervisedLearner::new(&config, &info, device)?),
    };
    // Everything that can fail on the user's input has been checked: now the run directory.
    prepare_run_dir(&out, resume, force)?;
    let config_toml = config.to_toml();
    let train_loader = train_loader(&config, splits.train.clone(), device);
    let metrics_path = out.join("metrics.jsonl");

    let (mut start_epoch, mut global_step, mut history) = (0usize, 0u64, Vec::new());
    if resume {
        let ckpt = checkpoint::latest(&out)?.ok_or_else(|| Error::run(&out, "--resume: no checkpoint found"))?;
        ckpt.load_model(learner.var_store_mut())?;
        learner.optimizer_mut().load_state(ckpt.optimizer_state()?);
        start_epoch = ckpt.state.epoch;
        global_step = ckpt.state.global_step;
        history = metrics::read_metrics(&metrics_path)?;
        history.retain(|m| m.epoch <= start_epoch);
        metrics::write_metrics(&metrics_path, &history)?;
        tracing::info!("resumed from {} (epoch {start_epoch})", ckpt.dir.display());
    } else {
        metrics::write_metrics(&metrics_path, &[])?;
    }
    if config.train.channels_last {
        crate::native::vars_to_channels_last(learner.var_store())?;
    }
    metrics::write_atomic(&out.join("config.toml"), config_toml.as_bytes())?;
    metrics::write_atomic(&out.join("seed"), format!("{}\n", config.seed).as_bytes())?;

    let started = Instant::now();
    let iters = train_loader.num_batches();
    let total_epochs = config.train.epochs;
    let total_steps = (iters * total_epochs) as u64;
    let end_epoch = stop_after.map_or(total_epochs, |n| (start_epoch + n).min(total_epochs));
    for epoch in start_epoch..end_epoch {
        let bar = progress_bar(progress, iters, epoch, total_epochs);
        let epoch_start = Instant::now();
        let mut rng = stream(config.seed, Stream::Mix, epoch as u64, 0);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut batches = train_loader.epoch(epoch as u64);
        let mut images = 0usize;
        let mut lr = 0.0;
        for (i, batch) in (&mut batches).enumerate() {
            let mut batch = batch?;
            if config.train.channels_last {
                batch.images = crate::native::to_channels_last(&batch.images)?;
            }
            let ctx = StepContext { epoch, iter: i, iters_per_epoch: iters, global_step, total_steps };
            let (loss, step_lr) = learner.train_step(&batch, &ctx, &mut rng)?;
            lr = step_lr;
            loss_sum += &loss;
            images += batch.len();
            global_step += 1;
            if let Some(bar) = &bar {
                bar.inc(1);
                if i % LOG_EVERY == 0 {
                    let ips = images as f64 / epoch_start.elapsed().as_secs_f64();
                    bar.set_message(format!("loss {:.3} lr {lr:.4} {ips:.0} img/s", loss.double_value(&[])));
                }
            }
        }
        let loader_wait_s = batches.waited().as_secs_f64();
        let train_time = epoch_start.elapsed().as_secs_f64();
        let train_loss = loss_sum.double_value(&[]) / iters.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(Error::run(&out, format!("training diverged at epoch {} (loss {train_loss}); lower optim.lr", epoch + 1)));
        }
        let ev = learner.evaluate(&test_loader)?;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let mut extra = learner.epoch_extras();
        extra.extend(ev.heads.clone());
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            test_loss: ev.primary.loss,
            test_acc1: ev.primary.acc1,
            test_acc5: ev.primary.acc5,
            lr,
            images_per_sec: images as f64 / train_time,
            loader_wait_s,
            epoch_time_s: epoch_start.elapsed().as_secs_f64(),
            extra,
        };
        let heads: String = ev.heads.iter().filter(|(k, _)| k.starts_with("acc1_")).map(|(k, v)| format!("  {}: {v:.2}%", &k[5..])).collect();
        eprintln!(
            "epoch {:>3}/{total_epochs}  loss {:.4}  test top-1 {:.2}%  top-5 {:.2}%  lr {:.4}  {:.0} img/s  loader wait {:.2}s{heads}",
            m.epoch, m.train_loss, m.test_acc1, m.test_acc5, m.lr, m.images_per_sec, m.loader_wait_s
        );
        metrics::append_metrics(&metrics_path, &m)?;
        history.push(m);
        let done = epoch + 1;
        learner.on_epoch_end(done, total_epochs, &out)?;
        if done % config.train.checkpoint_every == 0 || done == end_epoch {
            let state = CheckpointState { epoch: done, global_step, seed: config.seed, samix_version: env!("CARGO_PKG_VERSION").into() };
            checkpoint::save(&out, learner.var_store(), &learner.optimizer().state(), &state, &config_toml)?;
        }
    }
    if end_epoch == total_epochs {
        learner.on_finish(&out)?;
    }
    let summary = metrics::summarize(&history, config.train.median_of_last, started.elapsed().as_secs_f64(), format!("{device:?}"), config.seed);
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    metrics::write_atomic(&out.join("summary.json"), json.as_bytes())?;
    Ok(summary)
}

fn progress_bar(enabled: bool, len: usize, epoch: usize, total: usize) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {}/{}", epoch + 1, total));
    Some(bar)
}
