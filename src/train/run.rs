//! A training run from start to end: open the data and build the learner, prepare (or resume)
//! the run directory, join the other processes, train the epochs with checkpoints, write the
//! summary. Owns the run directory's top-level files; each step lives in its own module.
use super::build::build_learner;
use super::checkpoint::{self, CheckpointState, PartialEpoch};
use super::epoch::{EpochEnd, EpochRun};
use super::learner::Learner;
use super::loaders::{eval_loader, train_loader};
use super::metrics::{self, EpochMetrics, Summary};
use super::monitor::Monitor;
use super::monitor::Progress;
use super::replicas::Replicas;
use super::resume::{check_counters, check_resume_config, restore_or_start, Start};
use super::run_dir;
use super::stop::{interrupted, stop_requested, StopSignal};
use crate::config::TrainConfig;
use crate::data::loader::{Loader, Shard};
use crate::data::{open_splits, Dataset, Splits};
use crate::dist::ProcessGroup;
use crate::files::{write_atomic, write_json_atomic};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// What a training run is asked to do.
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

/// The run's data, loaders and learner (built before anything is written).
struct Setup {
    train_loader: Loader,
    test_loader: Loader,
    learner: Box<dyn Learner>,
}

impl Setup {
    /// Opens the data (`config.data.path` set to where it is), builds the learner, and the
    /// loaders of this process's shard.
    fn open(config: &mut TrainConfig, device: Device, shard: Shard) -> Result<Self> {
        let splits = open_data(config)?;
        let info = splits.train.info().clone();
        let test_loader = eval_loader(config, splits.test.clone(), device);
        let learner = build_learner(config, &info, &splits.train, &test_loader, device)?;
        let test_loader = test_loader.sharded(shard)?;
        let train_loader = train_loader(config, splits.train.clone(), device).sharded(shard)?;
        Ok(Setup { train_loader, test_loader, learner })
    }
}

/// Rank 0's (or the only process's) preparation: the resume check, the run directory (held for
/// the whole run, so that a second process on it is refused), the start restored from it.
fn prepare_run_dir(
    learner: &mut dyn Learner,
    config: &TrainConfig,
    out: &Path,
    resume: bool,
    force: bool,
) -> Result<(Option<run_dir::RunLock>, Start)> {
    if resume {
        check_resume_config(config, out)?;
    }
    // Everything that can fail on the user's input has been checked: now the run directory.
    let lock = run_dir::prepare(out, resume, force)?;
    let start = restore_or_start(learner, out, resume, config.seed)?;
    Ok((Some(lock), start))
}

/// Writes checkpoints (rank 0), after the replicas are found equal and the state finite.
struct Checkpointer<'a> {
    out: &'a Path,
    config: &'a TrainConfig,
    config_toml: &'a str,
    replicas: &'a Replicas,
    writes: bool,
}

impl Checkpointer<'_> {
    /// The checkpoint after `global_step` steps (mid-epoch with `partial`); its folder where
    /// this process wrote one.
    fn save(
        &self,
        learner: &dyn Learner,
        epoch: usize,
        global_step: u64,
        partial: Option<PartialEpoch>,
    ) -> Result<Option<PathBuf>> {
        // Replicas first: once they are known equal, every rank reaches the same verdict below.
        self.replicas.check(learner)?;
        ensure_finite(learner.var_store(), self.out, epoch, global_step)?;
        if !self.writes {
            return Ok(None);
        }
        let state = CheckpointState {
            epoch,
            global_step,
            seed: self.config.seed,
            samix_version: env!("CARGO_PKG_VERSION").into(),
            files: Default::default(),
            partial,
            state_sha256: None,
        };
        let optimizer = learner.optimizer().state();
        checkpoint::save(self.out, learner.var_store(), &optimizer, &state, self.config_toml).map(Some)
    }
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
    crate::host::warn_if_bf16_emulated(config.train.precision, device);
    let writes = group.as_ref().is_none_or(|g| g.is_main());
    let shard = group.as_ref().map_or(Shard::WHOLE, |g| Shard { rank: g.rank(), count: g.world_size() });
    let Setup { train_loader, test_loader, mut learner } = Setup::open(&mut config, device, shard)?;
    let config_toml = config.to_toml()?;
    // Rank 0 checks the run directory and restores the checkpoint; the others learn whether it
    // could (and stop with it if not) before any of them trains.
    let prepared = if writes {
        prepare_run_dir(learner.as_mut(), &config, &out, resume, force)
    } else {
        Ok((None, Start::fresh()))
    };
    let replicas = Replicas::new(group, learner.var_store(), config.dist.bucket_bytes());
    let (_lock, start) = replicas.join(learner.as_mut(), &config, (resume, stop_after), &out, prepared)?;
    check_start(&start, train_loader.num_batches(), &out)?;
    if config.train.channels_last {
        crate::native::vars_to_channels_last(learner.var_store())?;
    }
    if writes {
        write_atomic(&out.join("config.toml"), config_toml.as_bytes())?;
        write_atomic(&out.join("seed"), format!("{}\n", config.seed).as_bytes())?;
    }
    let started = Instant::now();
    let run = EpochRun {
        config: &config,
        out: &out,
        train_loader: &train_loader,
        test_loader: &test_loader,
        stop,
        replicas: &replicas,
        writes,
    };
    let saver = Checkpointer { out: &out, config: &config, config_toml: &config_toml, replicas: &replicas, writes };
    let end_epoch = stop_after.map_or(config.train.epochs, |n| (start.epoch + n).min(config.train.epochs));
    let history = train_epochs(&run, &saver, learner.as_mut(), start, end_epoch, progress)?;
    if end_epoch == config.train.epochs && writes {
        learner.on_finish(&out)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary =
        metrics::summarize(&history, config.train.median_of_last, elapsed, format!("{device:?}"), config.seed);
    if writes {
        write_json_atomic(&out.join("summary.json"), &summary)?;
    }
    // No rank leaves while rank 0 may still be writing (its last files end the run).
    replicas.barrier()?;
    Ok(summary)
}

/// Refuses a start whose counters cannot come from this run: a checkpoint's `state.json` (not
/// covered by the checksums it records) whose step inside its epoch passes the epoch's steps, or
/// whose global step is not its epochs' steps plus that (issue 24, R11: `epoch = 100`,
/// `partial.steps = 1000000` and `global_step = u64::MAX` were accepted).
fn check_start(start: &Start, iters: usize, out: &Path) -> Result<()> {
    let within = start.partial.as_ref().map_or(0, |p| p.steps);
    check_counters(start.epoch, start.global_step, within, iters).map_err(|msg| Error::run(out, msg))
}

/// The epochs from `start` up to `end_epoch`, with a checkpoint every `train.checkpoint_every`
/// epochs, at the end, and when a stop is requested; returns the metrics of every epoch.
fn train_epochs(
    run: &EpochRun,
    saver: &Checkpointer,
    learner: &mut dyn Learner,
    start: Start,
    end_epoch: usize,
    progress: Progress,
) -> Result<Vec<EpochMetrics>> {
    let (config, out, replicas) = (run.config, run.out, run.replicas);
    let Start { epoch: start_epoch, mut global_step, mut history, mut partial } = start;
    let mut monitor = if run.writes {
        Monitor::new(progress, &config.log, out)?
    } else {
        Monitor::new(Progress::Off, &crate::config::LogConfig { tensorboard: false, ..config.log.clone() }, out)?
    };
    // From here a stop request writes a checkpoint.
    let _armed = run.stop.map(StopSignal::arm);
    for epoch in start_epoch..end_epoch {
        let resumed = partial.take();
        match run.epoch(learner, epoch, &mut global_step, resumed.as_ref(), &mut monitor)? {
            EpochEnd::Completed(m) => history.push(m),
            EpochEnd::Interrupted(p) => {
                let what = format!("epoch {}, step {} of {}", epoch + 1, p.steps, run.train_loader.num_batches());
                // Stopped before any step of this call: the checkpoint resumed from is still the
                // latest (rewriting it would delete the folder `latest` names before replacing it).
                let dir = match resumed.filter(|r| r.steps == p.steps) {
                    Some(_) if run.writes => {
                        Some(checkpoint::latest(out)?.map(|c| c.dir).unwrap_or_else(|| out.join("checkpoints")))
                    }
                    Some(_) => None,
                    None => saver.save(learner, epoch, global_step, Some(p))?,
                };
                return Err(replicas.stopped(interrupted(out, dir.as_deref(), &what)));
            }
        }
        let done = epoch + 1;
        let stopping = replicas.any(stop_requested(run.stop) && done < end_epoch)?;
        if done % config.train.checkpoint_every == 0 || done == end_epoch || stopping {
            let dir = saver.save(learner, done, global_step, None)?;
            if stopping {
                let at = format!("the end of epoch {done}");
                return Err(replicas.stopped(interrupted(out, dir.as_deref(), &at)));
            }
        }
    }
    Ok(history)
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
