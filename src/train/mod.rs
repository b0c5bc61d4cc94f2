//! Training runs: the run directory, the epoch loop (loader → learner step → evaluation →
//! metrics → checkpoint), exact resume, and the learners that plug into it (a handcrafted policy,
//! online SAMix). Owns the run directory; reads data only through the loader.
pub mod checkpoint;
pub mod eval;
pub mod loaders;
pub mod metrics;
pub mod mixing;
pub mod model;
pub mod monitor;
pub mod run_dir;
pub mod samix_learner;
pub mod ssl_learner;
pub mod supervised;
pub mod visual;

pub use loaders::{eval_loader, train_loader, train_pipeline};
pub use mixing::{input_policy, Mixing, Policy};
pub use model::{seed_init, Model};
pub use monitor::Progress;
use monitor::{Monitor, StepView};
pub use samix_learner::SamixLearner;
pub use ssl_learner::SslLearner;
pub use supervised::SupervisedLearner;

use crate::config::TrainConfig;
use crate::data::loader::{Batch, Loader, Shard};
use crate::data::{open_splits, Dataset, DatasetInfo, Splits};
use crate::dist::ProcessGroup;
use crate::files::{write_atomic, write_json_atomic};
use crate::optim::Sgd;
use crate::rng::{stream, SamixRng, Stream};
use crate::{Error, Result};
use checkpoint::{CheckpointState, EpochSums, PartialEpoch};
use metrics::{EpochMetrics, Summary};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub struct RunOptions {
    pub config: TrainConfig,
    pub out: PathBuf,
    pub resume: bool,
    pub force: bool,
    pub device: Device,
    /// How progress is shown (a bar on a terminal, plain lines in logs, or none).
    pub progress: Progress,
    /// Train at most this many epochs in this call, then stop with a checkpoint, leaving a run
    /// that `--resume` continues (for time-limited job slots).
    pub stop_after: Option<usize>,
    /// A stop request (a signal handler makes it): the run stops at the next step boundary,
    /// writes a checkpoint `--resume` continues exactly from, and returns [`Error::Interrupted`].
    pub stop: Option<&'static StopSignal>,
    /// Data-parallel training: this process is one rank of the group (see [`crate::dist`]).
    /// Rank 0 alone writes the run directory; every rank reads its shard of each epoch and
    /// evaluates its shard of the test split.
    pub group: Option<Arc<ProcessGroup>>,
}

/// A request to stop a training run, made from outside (typically a signal handler, so every
/// method is a plain atomic access). The run arms it when its training loop starts: a handler
/// can then tell whether stopping would lose anything (before, nothing of the run is written
/// that a restart does not redo, so it may simply exit).
#[derive(Debug, Default)]
pub struct StopSignal {
    requested: AtomicBool,
    armed: AtomicBool,
}

impl StopSignal {
    pub const fn new() -> Self {
        StopSignal { requested: AtomicBool::new(false), armed: AtomicBool::new(false) }
    }
    /// Asks the run to stop; returns whether a stop had been asked for already.
    pub fn request(&self) -> bool {
        self.requested.swap(true, Ordering::SeqCst)
    }
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
    /// Whether a run's training loop is under way (a stop then writes a checkpoint).
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }
    /// Arms it for as long as the returned guard lives (however the training loop ends).
    fn arm(&self) -> Armed<'_> {
        self.armed.store(true, Ordering::SeqCst);
        Armed(self)
    }
}

/// Keeps a [`StopSignal`] armed; disarms it when dropped.
struct Armed<'a>(&'a StopSignal);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.armed.store(false, Ordering::SeqCst);
    }
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
    /// The sums behind [`Learner::epoch_extras`] so far, for a checkpoint taken mid-epoch.
    fn epoch_progress(&self) -> EpochSums {
        EpochSums::default()
    }
    /// Restores what [`Learner::epoch_progress`] returned (an epoch resumed mid-way).
    fn restore_epoch_progress(&mut self, _progress: &EpochSums) -> Result<()> {
        Ok(())
    }
    /// After an epoch's evaluation; returns the pictures it wrote (recorded with the metrics).
    fn on_epoch_end(&mut self, _epoch: usize, _total_epochs: usize, _out: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    fn on_finish(&mut self, _out: &Path) -> Result<()> {
        Ok(())
    }
    /// The process group of a data-parallel run, for learners whose step talks to the other
    /// processes itself (the key queue of self-supervised training).
    fn set_group(&mut self, _group: Arc<ProcessGroup>) {}
}

/// The learner a config names, for the training split `train` described by `info`. An online
/// Mixer's visuals show the first images of `test_loader`; self-supervised training's k-NN
/// monitor reads `train` without augmentation.
pub fn build_learner(
    config: &TrainConfig,
    info: &DatasetInfo,
    train: &Arc<dyn Dataset>,
    test_loader: &Loader,
    device: Device,
) -> Result<Box<dyn Learner>> {
    let visual_batch = || -> Result<Option<Tensor>> {
        Ok(match test_loader.epoch(0).next() {
            Some(first) => {
                let first = first?;
                Some(first.images.narrow(0, 0, first.len().min(8) as i64))
            }
            None => None,
        })
    };
    if let Some(ssl) = &config.ssl {
        let bank = eval_loader(config, train.clone(), device);
        let mut learner = SslLearner::new(config, ssl, info, bank, device)?;
        if let Some(images) = visual_batch()? {
            learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
        }
        return Ok(Box::new(learner));
    }
    match Mixing::from_config(&config.mix, info, config.image_side(), device)? {
        Mixing::Online { config: samix_config, options } => {
            let side =
                config.image_side().ok_or_else(|| Error::config("data.augment.image_size", "needed for SAMix"))?;
            let mut learner = SamixLearner::new(config, &samix_config, options, info, side, device)?;
            if let Some(images) = visual_batch()? {
                learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
            }
            Ok(Box::new(learner))
        }
        mixing => Ok(Box::new(SupervisedLearner::with_mixing(config, info, device, mixing)?)),
    }
}

/// Where the run starts: the first epoch to train, the steps already taken, the metrics of
/// the epochs before, and how far the first epoch got if it was interrupted.
struct Start {
    epoch: usize,
    global_step: u64,
    history: Vec<EpochMetrics>,
    partial: Option<PartialEpoch>,
}

/// A fresh metrics log, or the state of the latest checkpoint (weights, optimiser, counters, the
/// metrics up to it) loaded into `learner`.
fn restore_or_start(learner: &mut dyn Learner, out: &Path, resume: bool) -> Result<Start> {
    let metrics_path = out.join("metrics.jsonl");
    let ckpt = if resume { checkpoint::latest(out)? } else { None };
    let Some(ckpt) = ckpt else {
        if resume {
            // Stopped before its first checkpoint (killed, or interrupted before a step).
            tracing::info!("{}: no checkpoint yet; starting the run from the beginning", out.display());
        }
        metrics::write_metrics(&metrics_path, &[])?;
        return Ok(Start { epoch: 0, global_step: 0, history: Vec::new(), partial: None });
    };
    ckpt.load_model(learner.var_store_mut())?;
    let state_path = ckpt.dir.join(checkpoint::OPTIMIZER_FILE);
    let optimizer_state = ckpt.optimizer_state()?;
    if optimizer_state.is_empty() && ckpt.state.global_step > 0 && learner.optimizer().uses_momentum() {
        let msg =
            "is missing: SGD with momentum would resume from zero momentum; restore the file or start the run again";
        return Err(Error::data(&state_path, msg));
    }
    learner.optimizer_mut().load_state(optimizer_state).map_err(|e| match e {
        Error::Argument(msg) => Error::data(&state_path, msg),
        other => other,
    })?;
    let epoch = ckpt.state.epoch;
    let mut history = metrics::read_metrics_repairing(&metrics_path)?;
    history.retain(|m| m.epoch <= epoch);
    metrics::write_metrics(&metrics_path, &history)?;
    let partial = ckpt.state.partial.clone();
    if let Some(p) = &partial {
        learner.restore_epoch_progress(&p.learner)?;
        tracing::info!("resumed from {} (epoch {}, step {})", ckpt.dir.display(), epoch + 1, p.steps);
    } else {
        tracing::info!("resumed from {} (epoch {epoch})", ckpt.dir.display());
    }
    Ok(Start { epoch, global_step: ckpt.state.global_step, history, partial })
}

/// What one epoch of training steps produced.
struct EpochTrain {
    loss: f64,
    /// Images trained on in this call (for the throughput figure).
    images: usize,
    lr: f64,
    loader_wait_s: f64,
    seconds: f64,
    /// The step (0-based, within the epoch) this call started at (> 0 when resumed mid-epoch).
    first_step: usize,
    /// The first step (0-based, within the epoch) whose loss was not finite.
    first_non_finite: Option<usize>,
    /// Set when a stop was requested before the epoch's last step: how far it got.
    interrupted: Option<PartialEpoch>,
}

/// Whether `flag` holds on any rank of a data-parallel run (on this process alone without one).
fn on_any_rank(dp: Option<&DataParallel>, flag: bool) -> Result<bool> {
    match dp {
        Some(d) => d.group.any(flag),
        None => Ok(flag),
    }
}

/// Whether a stop has been requested.
fn stop_requested(stop: Option<&StopSignal>) -> bool {
    stop.is_some_and(StopSignal::is_requested)
}

/// One pass over the training loader: a learner step per batch; the loss stays on the device
/// and is read once at the end (and when the monitor shows or records it). An epoch resumed
/// mid-way (`resumed`) continues from where it stopped; a stop request ends it at the next step
/// boundary.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    learner: &mut dyn Learner,
    loader: &Loader,
    config: &TrainConfig,
    epoch: usize,
    global_step: &mut u64,
    resumed: Option<&PartialEpoch>,
    stop: Option<&StopSignal>,
    monitor: &mut Monitor,
    dp: Option<&DataParallel>,
) -> Result<EpochTrain> {
    let started = Instant::now();
    let iters = loader.num_batches();
    let total_steps = (iters * config.train.epochs) as u64;
    // Each rank mixes its own batch with its own draws (rank 0's are those of one process).
    let (rank, world) = dp.map_or((0, 1), |d| (d.group.rank(), d.group.world_size()));
    let mut rng = stream(config.seed, Stream::Mix, epoch as u64, rank as u64);
    let device = loader.device();
    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut first_step = 0;
    if let Some(p) = resumed {
        if let Some(pos) = p.stream_pos_of(rank)? {
            rng.set_word_pos(pos);
        }
        loss_sum = Tensor::from(p.loss_sum as f32).to_device(device);
        first_step = p.steps.min(iters);
    }
    // The first step of the epoch whose loss was not finite (−1: none), kept on the device so
    // that checking every step costs no host sync; read once with the epoch's loss.
    let mut first_bad = Tensor::full([], -1, (Kind::Int64, device));
    let mut batches = loader.epoch_from(epoch as u64, first_step);
    monitor.start_epoch(epoch, config.train.epochs, iters, first_step);
    let (mut images, mut lr) = (0usize, 0.0);
    // The step a stop request ended the epoch before (none: it ran to its end).
    let mut stopped_at = None;
    for i in first_step..iters {
        // Ranks stop together: a stop any of them sees is everyone's.
        if on_any_rank(dp, stop_requested(stop))? {
            stopped_at = Some(i);
            break;
        }
        let Some(batch) = batches.next() else { break };
        let mut batch = batch?;
        if config.train.channels_last {
            batch.images = crate::native::to_channels_last(&batch.images)?;
        }
        let ctx = StepContext { epoch, iter: i, iters_per_epoch: iters, global_step: *global_step, total_steps };
        let (loss, step_lr) = learner.train_step(&batch, &ctx, &mut rng)?;
        if let Some(d) = dp {
            d.sync_statistics()?;
        }
        lr = step_lr;
        let newly_bad = loss.isfinite().logical_not().logical_and(&first_bad.lt(0));
        first_bad = Tensor::full([], i as i64, (Kind::Int64, device)).where_self(&newly_bad, &first_bad);
        loss_sum += &loss;
        images += batch.len();
        *global_step += 1;
        monitor.step(&StepView {
            epoch,
            total_epochs: config.train.epochs,
            iter: i,
            iters,
            first_iter: first_step,
            global_step: *global_step,
            total_steps,
            loss: &loss,
            lr,
            // Over all ranks (each reads as many per step).
            images: images * world,
        })?;
    }
    let mut sum = loss_sum.double_value(&[]);
    let mut first_non_finite = usize::try_from(first_bad.int64_value(&[])).ok();
    let mut images = images as f64;
    if let Some(d) = dp {
        // The epoch's loss is the mean over the ranks; its images, their sum; its first
        // non-finite step, the earliest any rank saw (so all ranks stop on the same verdict).
        let sums = d.group.sum_f64(&[sum, images])?;
        (sum, images) = (sums[0] / d.group.world_size() as f64, sums[1]);
        first_non_finite = d.earliest(first_non_finite)?;
    }
    let interrupted = match stopped_at {
        None => None,
        Some(steps) => {
            let positions = match dp {
                Some(d) => d.group.all_gather(&stream_pos_tensor(rng.get_word_pos()))?,
                None => stream_pos_tensor(rng.get_word_pos()).unsqueeze(0),
            };
            let positions: Vec<String> = (0..positions.size()[0])
                .map(|r| {
                    let (hi, lo) = (positions.int64_value(&[r, 0]) as u64, positions.int64_value(&[r, 1]) as u64);
                    ((u128::from(hi) << 64) | u128::from(lo)).to_string()
                })
                .collect();
            Some(PartialEpoch {
                steps,
                loss_sum: sum,
                mix_stream_pos: positions[0].clone(),
                rank_mix_stream_pos: positions[1..].to_vec(),
                learner: match dp {
                    // Every rank resumes from the ranks' mean sums.
                    Some(d) => {
                        let progress = learner.epoch_progress();
                        EpochSums { sums: d.mean(progress.sums)?, steps: progress.steps }
                    }
                    None => learner.epoch_progress(),
                },
            })
        }
    };
    Ok(EpochTrain {
        loss: sum / iters.max(1) as f64,
        images: images as usize,
        lr,
        loader_wait_s: batches.waited().as_secs_f64(),
        seconds: started.elapsed().as_secs_f64(),
        first_step,
        first_non_finite,
        interrupted,
    })
}

/// Evaluates after an epoch and assembles its metrics line.
fn epoch_metrics(
    learner: &mut dyn Learner,
    test_loader: &Loader,
    epoch: usize,
    trained: &EpochTrain,
    epoch_start: Instant,
    dp: Option<&DataParallel>,
) -> Result<EpochMetrics> {
    let mut ev = learner.evaluate(test_loader)?;
    let mut extra = learner.epoch_extras();
    if let Some(d) = dp {
        ev = d.reduce(ev)?;
        extra = d.mean(extra)?;
    }
    extra.extend(ev.heads.clone());
    Ok(EpochMetrics {
        epoch: epoch + 1,
        train_loss: trained.loss,
        test_loss: ev.primary.loss,
        test_acc1: ev.primary.acc1,
        test_acc5: ev.primary.acc5,
        lr: trained.lr,
        images_per_sec: trained.images as f64 / trained.seconds,
        loader_wait_s: trained.loader_wait_s,
        epoch_time_s: epoch_start.elapsed().as_secs_f64(),
        extra,
    })
}

/// The epoch's one-line report (the accuracies of further heads appended).
fn log_epoch(m: &EpochMetrics, total_epochs: usize) {
    let heads: String = m.head_acc1().map(|(head, v)| format!("  {head}: {v:.2}%")).collect();
    tracing::info!(
        "epoch {:>3}/{total_epochs}  loss {:.4}  test top-1 {:.2}%  top-5 {:.2}%  lr {:.4}  {:.0} img/s  loader wait {:.2}s{heads}",
        m.epoch,
        m.train_loss,
        m.test_acc1,
        m.test_acc5,
        m.lr,
        m.images_per_sec,
        m.loader_wait_s
    );
}

/// The data of a run, with `config.data.path` set to where the data really is (so resume and
/// eval read the same files), checked against the batch size.
fn open_data(config: &mut TrainConfig) -> Result<Splits> {
    let data_path = crate::data::resolve_path(&config.data)?;
    config.data.path = Some(data_path.canonicalize().unwrap_or(data_path));
    let splits = open_splits(&config.data)?;
    if splits.test.is_empty() {
        let key = if config.data.classes.is_some() { "data.classes" } else { "data.test_limit" };
        return Err(Error::config(key, "leaves no test images to evaluate on"));
    }
    check_test_split(&splits.test, config.data.workers)?;
    if splits.train.len() < config.train.batch_size {
        return Err(Error::config(
            "train.batch_size",
            format!("{} is larger than the training set ({} images)", config.train.batch_size, splits.train.len()),
        ));
    }
    Ok(splits)
}

/// Reads every test image once before training starts, on `workers` threads, so that a corrupt
/// one is reported now, naming it, not after the first training epoch. (Costs one decode pass of
/// the test split, as one evaluation does; the in-memory datasets only copy.)
fn check_test_split(test: &Arc<dyn Dataset>, workers: usize) -> Result<()> {
    let workers = workers.clamp(1, 16);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || (w..test.len()).step_by(workers).try_for_each(|i| test.load(i).map(drop))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| Err(Error::Argument("a test-split check thread stopped unexpectedly".into())))
        })
    })
}

/// What every epoch of a run shares.
struct EpochRun<'a> {
    config: &'a TrainConfig,
    out: &'a Path,
    train_loader: &'a Loader,
    test_loader: &'a Loader,
    stop: Option<&'static StopSignal>,
    dp: Option<&'a DataParallel>,
    /// Whether this process writes the run directory (rank 0, or the only process).
    writes: bool,
}

/// How an epoch ended: completed (evaluated, its metrics appended), or stopped part-way.
enum EpochEnd {
    Completed(EpochMetrics),
    Interrupted(PartialEpoch),
}

impl EpochRun<'_> {
    /// Trains one epoch (or the rest of one, `resumed`), evaluates, reports and appends its
    /// metrics, and lets the learner write its per-epoch files; or stops part-way on request.
    fn epoch(
        &self,
        learner: &mut dyn Learner,
        epoch: usize,
        global_step: &mut u64,
        resumed: Option<&PartialEpoch>,
        monitor: &mut Monitor,
    ) -> Result<EpochEnd> {
        let total_epochs = self.config.train.epochs;
        let epoch_start = Instant::now();
        let step_before = *global_step;
        let trained = train_epoch(
            learner,
            self.train_loader,
            self.config,
            epoch,
            global_step,
            resumed,
            self.stop,
            monitor,
            self.dp,
        )?;
        if let Some(bad) = trained.first_non_finite {
            let iters = self.train_loader.num_batches();
            let step = step_before + (bad - trained.first_step) as u64 + 1;
            let msg = format!(
                "training diverged at epoch {}, step {} of {iters} (step {step} of the run): the loss is not finite; lower optim.lr (nothing of this epoch was checkpointed)",
                epoch + 1,
                bad + 1
            );
            return Err(Error::run(self.out, msg));
        }
        if let Some(partial) = trained.interrupted {
            monitor.abandon_epoch();
            return Ok(EpochEnd::Interrupted(partial));
        }
        let m = epoch_metrics(learner, self.test_loader, epoch, &trained, epoch_start, self.dp)?;
        if !(m.test_loss.is_finite() && m.train_loss.is_finite()) {
            let msg = format!(
                "training diverged by epoch {} (step {} of the run): the weights give a non-finite loss; lower optim.lr (nothing of this epoch was recorded)",
                epoch + 1,
                *global_step
            );
            return Err(Error::run(self.out, msg));
        }
        if self.writes {
            metrics::append_metrics(&self.out.join("metrics.jsonl"), &m)?;
            let pictures = learner.on_epoch_end(epoch + 1, total_epochs, self.out)?;
            monitor.end_epoch(&m, &pictures)?;
            log_epoch(&m, total_epochs);
        }
        Ok(EpochEnd::Completed(m))
    }
}

/// Refuses to checkpoint weights or statistics that are not all finite.
fn ensure_finite(vs: &VarStore, out: &Path, epoch: usize, global_step: u64) -> Result<()> {
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let flags: Vec<Tensor> = names.iter().map(|n| vars[*n].isfinite().all()).collect();
    if flags.is_empty() || bool::try_from(Tensor::stack(&flags, 0).all())? {
        return Ok(());
    }
    let first =
        names.iter().zip(&flags).find(|(_, f)| !bool::try_from(*f).unwrap_or(false)).map_or("?", |(n, _)| n.as_str());
    let msg = format!(
        "training diverged by epoch {epoch} (step {global_step} of the run): `{first}` is not finite; lower optim.lr (not checkpointed)"
    );
    Err(Error::run(out, msg))
}

/// Keys a resumed run may change: the schedule's length, where the data is, and the loader's
/// worker counts (none of which changes what the data or the model are).
const RESUMABLE_CHANGES: &[&str] = &[
    "train.epochs",
    "data.path",
    "data.workers",
    "data.prefetch",
    "log.tensorboard",
    "log.progress_every_s",
    "dist.bucket_mb",
    "dist.timeout_s",
];

/// Keys whose values may differ between the processes of one data-parallel run: where each
/// finds the data, how it loads it, how it logs, and its own threads and patience. Everything
/// else (the batch, the schedule, `dist.bucket_mb`, whose buckets must match) must be rank 0's.
const PER_PROCESS_KEYS: &[&str] = &[
    "data.path",
    "data.workers",
    "data.prefetch",
    "log.tensorboard",
    "log.progress_every_s",
    "dist.timeout_s",
    "train.threads",
];

/// On `--resume`, the config given must be the run's own (`config.toml`) but for
/// [`RESUMABLE_CHANGES`]; otherwise the resume is refused, naming every changed key, before
/// anything is written.
fn check_resume_config(config: &TrainConfig, out: &Path) -> Result<()> {
    let path = out.join("config.toml");
    if !path.is_file() {
        return Ok(());
    }
    let stored = TrainConfig::load(&path, &[])?.table_without(RESUMABLE_CHANGES)?;
    let given = config.table_without(RESUMABLE_CHANGES)?;
    let mut changed = Vec::new();
    diff_keys("", &toml::Value::Table(stored), &toml::Value::Table(given), &mut changed);
    if changed.is_empty() {
        return Ok(());
    }
    let msg = format!(
        "--resume with a config that changes {}; a run continues with its own config.toml (only {} may change) — start a new run for another config",
        changed.join(", "),
        RESUMABLE_CHANGES.join(", ")
    );
    Err(Error::run(out, msg))
}

/// The dotted keys whose values differ between two TOML values.
fn diff_keys(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => diff_keys(&key, va, vb, out),
                    _ => out.push(key),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// A data-parallel run's side of the loop: the group, and the variables kept equal on every
/// rank by broadcast rather than by construction.
struct DataParallel {
    group: Arc<ProcessGroup>,
    bucket_bytes: usize,
    /// The BatchNorm running statistics of every network of the learner (online, EMA, Mixer),
    /// in name order. Each rank updates them from its own batch; rank 0's are broadcast after
    /// every step, as PyTorch's DDP broadcasts buffers, so that evaluation and checkpoints see
    /// one set. (Parameters, EMA copies and optimiser state need nothing: identical gradients
    /// make them identical.)
    statistics: Vec<Tensor>,
}

impl DataParallel {
    fn new(group: Arc<ProcessGroup>, vs: &VarStore, bucket_bytes: usize) -> Self {
        let vars = vs.variables();
        let mut names: Vec<&String> = vars
            .iter()
            .filter(|(n, t)| !t.requires_grad() && (n.ends_with("running_mean") || n.ends_with("running_var")))
            .map(|(n, _)| n)
            .collect();
        names.sort();
        let statistics = names.into_iter().map(|n| vars[n].shallow_clone()).collect();
        DataParallel { group, bucket_bytes, statistics }
    }

    fn sync_statistics(&self) -> Result<()> {
        if self.statistics.is_empty() {
            return Ok(());
        }
        self.group.broadcast_from_main(&self.statistics, self.bucket_bytes)
    }

    /// Makes every rank start where rank 0 does: its weights, statistics and optimiser state
    /// (restored from a checkpoint, or freshly initialised), and its place in the run.
    fn start_from_main(&self, learner: &mut dyn Learner, start: Start) -> Result<Start> {
        learner.optimizer_mut().materialize_buffers();
        let tensors: Vec<Tensor> = replicated_state(learner).into_iter().map(|(_, t)| t).collect();
        self.group.broadcast_from_main(&tensors, self.bucket_bytes)?;
        let place = StartPlace { epoch: start.epoch, global_step: start.global_step, partial: start.partial };
        let json = serde_json::to_vec(&place).map_err(|e| Error::Argument(format!("run start: {e}")))?;
        let json = self.group.broadcast_bytes(json)?;
        let place: StartPlace =
            serde_json::from_slice(&json).map_err(|e| Error::Argument(format!("run start from rank 0: {e}")))?;
        if let Some(p) = &place.partial {
            learner.restore_epoch_progress(&p.learner)?;
            if p.stream_pos_of(self.group.rank())?.is_none() {
                tracing::warn!(
                    "the checkpoint was written mid-epoch by fewer processes: rank {}'s mixing draws for the rest of epoch {} start afresh",
                    self.group.rank(),
                    place.epoch + 1
                );
            }
        }
        Ok(Start { epoch: place.epoch, global_step: place.global_step, history: start.history, partial: place.partial })
    }

    /// Fails, naming the first variable that differs, unless every rank holds bit for bit the
    /// weights, statistics and optimiser state of rank 0 (whose copies are broadcast and
    /// compared). Run before every checkpoint: replicas that drifted apart would otherwise go
    /// unnoticed, since only rank 0's are saved.
    fn check_replicas(&self, learner: &dyn Learner) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let named = replicated_state(learner);
        let mains: Vec<Tensor> = named.iter().map(|(_, t)| t.copy()).collect();
        self.group.broadcast_from_main(&mains, self.bucket_bytes)?;
        let first_local = named.iter().zip(&mains).position(|((_, t), m)| !t.equal(m));
        // The lowest differing index over the ranks, so that every rank reports the same one.
        match self.earliest(first_local)? {
            None => Ok(()),
            Some(i) => {
                let name = named.get(i).map_or("?", |(n, _)| n.as_str());
                Err(Error::Argument(format!(
                    "data-parallel replicas differ: `{name}` is not rank 0's on every rank (not checkpointed)"
                )))
            }
        }
    }

    /// The evaluation of the whole test split from every rank's shard: each figure is the
    /// image-weighted mean of the ranks' figures.
    fn reduce(&self, ev: eval::Evaluation) -> Result<eval::Evaluation> {
        let n = ev.primary.images as f64;
        let mut values = vec![n, ev.primary.acc1 * n, ev.primary.acc5 * n, ev.primary.loss * n];
        values.extend(ev.heads.values().map(|v| v * n));
        let sums = self.group.sum_f64(&values)?;
        let total = sums[0].max(1.0);
        let primary = eval::EvalResult {
            images: sums[0] as usize,
            acc1: sums[1] / total,
            acc5: sums[2] / total,
            loss: sums[3] / total,
        };
        let heads = ev.heads.keys().zip(&sums[4..]).map(|(k, v)| (k.clone(), v / total)).collect();
        Ok(eval::Evaluation { primary, heads })
    }

    /// The keys in which this process's recipe — `config` but for [`PER_PROCESS_KEYS`], and the
    /// run options every process must share — differs from rank 0's.
    fn differences_from_main(
        &self,
        config: &TrainConfig,
        resume: bool,
        stop_after: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut table = config.table_without(PER_PROCESS_KEYS)?;
        let mut options = toml::Table::new();
        options.insert("resume".into(), toml::Value::Boolean(resume));
        let stop_after = stop_after.map_or_else(|| "none".to_string(), |n| n.to_string());
        options.insert("stop_after".into(), toml::Value::String(stop_after));
        table.insert("train_options".into(), toml::Value::Table(options));
        let mine = toml::Value::Table(table);
        let text = toml::to_string(&mine).map_err(|e| Error::Argument(format!("config: {e}")))?;
        let main = self.group.broadcast_bytes(text.into_bytes())?;
        let main: toml::Value = std::str::from_utf8(&main)
            .ok()
            .and_then(|t| toml::from_str(t).ok())
            .ok_or_else(|| Error::Argument("rank 0's config arrived unreadable".into()))?;
        let mut changed = Vec::new();
        diff_keys("", &main, &mine, &mut changed);
        Ok(changed)
    }

    /// The smallest of the ranks' values (`None` where a rank has none).
    fn earliest(&self, value: Option<usize>) -> Result<Option<usize>> {
        // The maximum of −value, i64::MIN standing for none.
        let negated = Tensor::from_slice(&[value.map_or(i64::MIN, |v| -(v as i64))]);
        self.group.all_reduce_max(&[&negated])?;
        Ok(match negated.int64_value(&[0]) {
            i64::MIN => None,
            v => usize::try_from(-v).ok(),
        })
    }

    /// The mean over the ranks of each figure (the same keys on every rank).
    fn mean(&self, figures: BTreeMap<String, f64>) -> Result<BTreeMap<String, f64>> {
        let values: Vec<f64> = figures.values().copied().collect();
        let sums = self.group.sum_f64(&values)?;
        let world = self.group.world_size() as f64;
        Ok(figures.into_keys().zip(sums).map(|(k, v)| (k, v / world)).collect())
    }
}

/// What data-parallel ranks must hold alike: every variable of the learner (weights, statistics,
/// EMA copies) in name order, then the optimiser's momentum buffers.
fn replicated_state(learner: &dyn Learner) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = learner.var_store().variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(learner.optimizer().state());
    named
}

/// Where a run starts, as rank 0 tells the others.
#[derive(serde::Serialize, serde::Deserialize)]
struct StartPlace {
    epoch: usize,
    global_step: u64,
    partial: Option<PartialEpoch>,
}

/// A mixing stream's word position as two i64 words (high, low) for a collective.
fn stream_pos_tensor(pos: u128) -> Tensor {
    Tensor::from_slice(&[(pos >> 64) as u64 as i64, pos as u64 as i64])
}

/// Trains as the options say and returns the run summary (also written to `summary.json` by
/// the process that writes the run directory).
pub fn run(opts: RunOptions) -> Result<Summary> {
    let RunOptions { mut config, out, resume, force, device, progress, stop_after, stop, group } = opts;
    if stop_after == Some(0) {
        return Err(Error::Argument("--stop-after must be at least 1 (epochs to train in this call)".into()));
    }
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads as i32);
    }
    crate::device::prepare(device);
    let writes = group.as_ref().is_none_or(|g| g.is_main());
    let shard = group.as_ref().map_or(Shard::WHOLE, |g| Shard { rank: g.rank(), count: g.world_size() });
    let splits = open_data(&mut config)?;
    let info = splits.train.info().clone();
    let test_loader = eval_loader(&config, splits.test.clone(), device);
    let mut learner = build_learner(&config, &info, &splits.train, &test_loader, device)?;
    let test_loader = test_loader.sharded(shard)?;
    let train_loader = train_loader(&config, splits.train.clone(), device).sharded(shard)?;
    let config_toml = config.to_toml()?;
    // Rank 0 checks the run directory and restores the checkpoint; the others learn whether it
    // could (and stop with it if not) before any of them trains.
    let prepared: Result<(Option<run_dir::RunLock>, Start)> = if writes {
        (|| {
            if resume {
                check_resume_config(&config, &out)?;
            }
            // Everything that can fail on the user's input has been checked: now the run
            // directory, held for the whole run so that a second process on it is refused.
            let lock = run_dir::prepare(&out, resume, force)?;
            let start = restore_or_start(learner.as_mut(), &out, resume)?;
            Ok((Some(lock), start))
        })()
    } else {
        Ok((None, Start { epoch: 0, global_step: 0, history: Vec::new(), partial: None }))
    };
    let dp = group.map(|g| DataParallel::new(g, learner.var_store(), config.dist.bucket_bytes()));
    if let Some(d) = &dp {
        learner.set_group(d.group.clone());
        // Every process must train rank 0's recipe (only where the data is and such may differ).
        let changed = d.differences_from_main(&config, resume, stop_after)?;
        if d.group.any(prepared.is_err() || !changed.is_empty())? && prepared.is_ok() {
            let msg = if changed.is_empty() {
                "another process could not start the run; its output says why".to_string()
            } else {
                format!(
                    "this process's config differs from rank 0's in {}; every process must train the same config",
                    changed.join(", ")
                )
            };
            return Err(Error::run(&out, msg));
        }
    }
    let (_lock, start) = prepared?;
    let Start { epoch: start_epoch, mut global_step, mut history, mut partial } = match &dp {
        Some(d) => {
            learner.optimizer_mut().average_gradients_over(d.group.clone(), d.bucket_bytes);
            let start = d.start_from_main(learner.as_mut(), start)?;
            if d.group.rank() > 0 {
                // libtorch's own generator (dropout) draws differently on each rank, as the
                // mixing streams do; rank 0 keeps a single process's.
                tch::manual_seed(config.seed.wrapping_mul(0x9E37_79B9).wrapping_add(d.group.rank() as u64) as i64);
            }
            start
        }
        None => start,
    };
    if config.train.channels_last {
        crate::native::vars_to_channels_last(learner.var_store())?;
    }
    if writes {
        write_atomic(&out.join("config.toml"), config_toml.as_bytes())?;
        write_atomic(&out.join("seed"), format!("{}\n", config.seed).as_bytes())?;
    }

    let started = Instant::now();
    let total_epochs = config.train.epochs;
    let end_epoch = stop_after.map_or(total_epochs, |n| (start_epoch + n).min(total_epochs));
    let run = EpochRun {
        config: &config,
        out: &out,
        train_loader: &train_loader,
        test_loader: &test_loader,
        stop,
        dp: dp.as_ref(),
        writes,
    };
    let mut monitor = if writes {
        Monitor::new(progress, &config.log, &out)?
    } else {
        Monitor::new(Progress::Off, &crate::config::LogConfig { tensorboard: false, ..config.log.clone() }, &out)?
    };
    let save = |learner: &dyn Learner, epoch: usize, global_step: u64, partial: Option<PartialEpoch>| {
        // Replicas first: once they are known equal, every rank reaches the same verdict below.
        if let Some(d) = &dp {
            d.check_replicas(learner)?;
        }
        ensure_finite(learner.var_store(), &out, epoch, global_step)?;
        if !writes {
            return Ok(None);
        }
        let state = CheckpointState {
            epoch,
            global_step,
            seed: config.seed,
            samix_version: env!("CARGO_PKG_VERSION").into(),
            files: Default::default(),
            partial,
        };
        checkpoint::save(&out, learner.var_store(), &learner.optimizer().state(), &state, &config_toml).map(Some)
    };
    // From here a stop request writes a checkpoint.
    let _armed = stop.map(StopSignal::arm);
    for epoch in start_epoch..end_epoch {
        let resumed = partial.take();
        match run.epoch(learner.as_mut(), epoch, &mut global_step, resumed.as_ref(), &mut monitor)? {
            EpochEnd::Completed(m) => history.push(m),
            EpochEnd::Interrupted(p) => {
                let what = format!("epoch {}, step {} of {}", epoch + 1, p.steps, train_loader.num_batches());
                // Stopped before any step of this call: the checkpoint resumed from is still the
                // latest (rewriting it would delete the folder `latest` names before replacing it).
                let dir = match resumed.filter(|r| r.steps == p.steps) {
                    Some(_) if writes => {
                        Some(checkpoint::latest(&out)?.map(|c| c.dir).unwrap_or_else(|| out.join("checkpoints")))
                    }
                    Some(_) => None,
                    None => save(learner.as_ref(), epoch, global_step, Some(p))?,
                };
                return Err(stopped(dp.as_ref(), interrupted(&out, dir.as_deref(), &what)));
            }
        }
        let done = epoch + 1;
        let stopping = on_any_rank(dp.as_ref(), stop_requested(stop) && done < end_epoch)?;
        if done % config.train.checkpoint_every == 0 || done == end_epoch || stopping {
            let dir = save(learner.as_ref(), done, global_step, None)?;
            if stopping {
                let at = format!("the end of epoch {done}");
                return Err(stopped(dp.as_ref(), interrupted(&out, dir.as_deref(), &at)));
            }
        }
    }
    if end_epoch == total_epochs && writes {
        learner.on_finish(&out)?;
    }
    let summary = metrics::summarize(
        &history,
        config.train.median_of_last,
        started.elapsed().as_secs_f64(),
        format!("{device:?}"),
        config.seed,
    );
    if writes {
        write_json_atomic(&out.join("summary.json"), &summary)?;
    }
    if let Some(d) = &dp {
        // No rank leaves while rank 0 may still be writing (its last files end the run).
        d.group.barrier()?;
    }
    Ok(summary)
}

/// A stopped run's error, returned once every rank is there: a rank that ended first would make
/// a launcher such as torchrun stop the others, rank 0 perhaps still writing the checkpoint.
fn stopped(dp: Option<&DataParallel>, err: Error) -> Error {
    if let Some(Err(e)) = dp.map(|d| d.group.barrier()) {
        tracing::warn!("while stopping, not every process reached the end: {e}");
    }
    err
}

/// The error a stopped run ends with: where it stopped, the checkpoint (`None`: another
/// process, rank 0, wrote it), how to continue.
fn interrupted(out: &Path, checkpoint: Option<&Path>, at: &str) -> Error {
    let written = match checkpoint {
        Some(c) => {
            let name = c.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            format!("checkpoint checkpoints/{name} written")
        }
        None => "rank 0 wrote the checkpoint".to_string(),
    };
    Error::Interrupted {
        path: out.to_path_buf(),
        msg: format!("stopped at {at}; {written}; continue with `samix train --resume --out {}`", out.display()),
    }
}
