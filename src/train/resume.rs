//! Where a run starts: fresh, or from its latest checkpoint (weights, optimiser state, counters,
//! metrics up to it, how far an interrupted epoch got), and the check that a resumed run keeps
//! its own config. Reads the run directory; writes only `metrics.jsonl` (trimmed to the
//! checkpoint).
use super::checkpoint::{self, PartialEpoch};
use super::learner::Learner;
use super::metrics::{self, EpochMetrics};
use crate::config::TrainConfig;
use crate::{Error, Result};
use std::path::Path;

/// Where the run starts: the first epoch to train, the steps already taken, the metrics of
/// the epochs before, and how far the first epoch got if it was interrupted.
pub(super) struct Start {
    pub epoch: usize,
    pub global_step: u64,
    pub history: Vec<EpochMetrics>,
    pub partial: Option<PartialEpoch>,
}

/// A fresh metrics log, or the state of the latest checkpoint (weights, optimiser, counters, the
/// metrics up to it) loaded into `learner`, after [`check_state`] (`seed`: the run's).
pub(super) fn restore_or_start(learner: &mut dyn Learner, out: &Path, resume: bool, seed: u64) -> Result<Start> {
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
    check_state(&ckpt.state, seed, &ckpt.dir.join(checkpoint::STATE_FILE))?;
    ckpt.load_model(learner.var_store_mut())?;
    let state_path = ckpt.dir.join(checkpoint::OPTIMIZER_FILE);
    let optimizer_state = ckpt.optimizer_state()?;
    if optimizer_state.is_empty() && ckpt.state.global_step > 0 && learner.optimizer().keeps_state() {
        let msg = "is missing: the optimiser would resume from zeros (SGD's momentum, AdamW's moments and step counts); restore the file or start the run again";
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

/// Every check a resume makes of a checkpoint's `state.json` (which its checksums do not cover)
/// before it loads anything: [`check_state`], the counters against `steps_per_epoch` (as
/// `run::check_start` checks them) and rank 0's mixing stream position. Errors name the file
/// (`path`). What the `state` fuzz target feeds.
pub fn check_resumable(
    state: &checkpoint::CheckpointState,
    seed: u64,
    steps_per_epoch: usize,
    path: &Path,
) -> Result<()> {
    check_state(state, seed, path)?;
    let within = state.partial.as_ref().map_or(0, |p| p.steps);
    check_counters(state.epoch, state.global_step, within, steps_per_epoch).map_err(|msg| Error::data(path, msg))?;
    if let Some(p) = &state.partial {
        p.stream_pos_of(0).map_err(|e| Error::data(path, e.to_string()))?;
    }
    Ok(())
}

/// Whether `epoch` epochs of `iters` steps and `within` steps of the next give `global_step`
/// (and `within` lies inside an epoch); otherwise what is wrong, for a message naming the file.
pub(super) fn check_counters(
    epoch: usize,
    global_step: u64,
    within: usize,
    iters: usize,
) -> std::result::Result<(), String> {
    let expected = (epoch as u64).checked_mul(iters as u64).and_then(|s| s.checked_add(within as u64));
    if within > iters || expected != Some(global_step) {
        return Err(format!(
            "the latest checkpoint's state.json says epoch {epoch}, step {within} of it and global step {global_step}, which {iters} steps per epoch cannot give (a damaged or edited state.json; start the run again with --force)"
        ));
    }
    Ok(())
}

/// The parts of a checkpoint's `state.json` (checked beside its seal, which a state written
/// before seals were recorded does not carry, and which a deliberate edit re-seals) that the run's
/// counters (`run::check_start`) do not: its seed is the run's, and an interrupted epoch's
/// learner sums count no more steps than the epoch took (issue 24, R11). Errors name the file.
fn check_state(state: &checkpoint::CheckpointState, seed: u64, path: &Path) -> Result<()> {
    if state.seed != seed {
        let msg = format!("says seed {}, but the run's seed is {seed} (a damaged or edited state.json)", state.seed);
        return Err(Error::data(path, msg));
    }
    if let Some(p) = state.partial.as_ref().filter(|p| p.learner.steps > p.steps) {
        let msg = format!(
            "says the interrupted epoch took {} steps, but its sums count {} (a damaged or edited state.json)",
            p.steps, p.learner.steps
        );
        return Err(Error::data(path, msg));
    }
    Ok(())
}

impl Start {
    /// The start of a fresh run.
    pub(super) fn fresh() -> Self {
        Start { epoch: 0, global_step: 0, history: Vec::new(), partial: None }
    }
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

/// On `--resume`, the config given must be the run's own (`config.toml`) but for
/// [`RESUMABLE_CHANGES`]; otherwise the resume is refused, naming every changed key, before
/// anything is written.
pub(super) fn check_resume_config(config: &TrainConfig, out: &Path) -> Result<()> {
    let path = out.join("config.toml");
    if !path.is_file() {
        return Ok(());
    }
    let stored = TrainConfig::load_stored(&path, &[])?.table_without(RESUMABLE_CHANGES)?;
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
pub(super) fn diff_keys(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
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
