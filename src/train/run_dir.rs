//! The run directory: created for a new run (with a marker only samix writes), kept for
//! `--resume`, replaced with `--force` — only when the marker says samix made it, and then only
//! the entries samix writes are removed; anything else the user put there stays. The run's lock
//! is [`super::run_lock`].
pub use super::run_lock::{lock, RunLock, HOLDER_FILE as LOCK};
use crate::{Error, Result};
use std::path::Path;

/// The file that marks a folder as a samix run directory.
pub const MARKER: &str = ".samix-run";

/// Everything a run writes into its directory (and the temporary names it writes them under).
/// (Not the lock's holder file: it names the process that is replacing the run.)
const RUN_ENTRIES: &[&str] = &[
    MARKER,
    "config.toml",
    "seed",
    "metrics.jsonl",
    "summary.json",
    "checkpoints",
    "visuals",
    "tensorboard",
    "report",
    "mixer.json",
    "mixer.safetensors",
    "config.toml.tmp",
    "seed.tmp",
    "metrics.jsonl.tmp",
    "summary.json.tmp",
    "mixer.json.tmp",
    "mixer.safetensors.tmp",
];

/// Prepares the run directory — new, resumed, or replaced with `--force` — and returns its lock,
/// held for the whole run. A samix run is locked before anything in it is touched; a folder samix
/// did not make gets no lock file (it is refused untouched).
pub fn prepare(out: &Path, resume: bool, force: bool) -> Result<RunLock> {
    let held = if out.join(MARKER).is_file() { Some(lock(out)?) } else { None };
    let is_empty = !out.exists() || std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_none();
    if !resume && !is_empty {
        if !force {
            return Err(Error::run(out, "run directory exists; pass --resume to continue it or --force to replace it"));
        }
        if held.is_none() {
            return Err(Error::run(
                out,
                format!("--force refuses: not a samix run (no {MARKER}, which every samix run directory has); nothing was deleted"),
            ));
        }
        remove_run_entries(out)?;
    }
    // `--resume` of a run that produced nothing yet (stopped before its first checkpoint, or never
    // started: no folder) starts it from the beginning, so a requeued job may always pass
    // --resume; anything else without a checkpoint is not a run to continue (restarting would
    // overwrite its results, or it is not a samix run).
    let startable = is_empty || (held.is_some() && !has_results(out));
    if resume && !out.join("checkpoints").join("latest").exists() && !startable {
        return Err(Error::run(out, "--resume: no checkpoint found (checkpoints/latest)"));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let held = match held {
        Some(held) => held,
        None => lock(out)?,
    };
    let marker = out.join(MARKER);
    if !marker.exists() {
        let text = format!("samix run directory (samix {})\n", env!("CARGO_PKG_VERSION"));
        crate::files::write_atomic(&marker, text.as_bytes())?;
    }
    Ok(held)
}

/// Whether a run directory holds anything a training run produced: checkpoints, a summary, or
/// a metrics line.
fn has_results(out: &Path) -> bool {
    let metrics = std::fs::metadata(out.join("metrics.jsonl")).map(|m| m.len() > 0).unwrap_or(false);
    metrics || out.join("checkpoints").exists() || out.join("summary.json").exists()
}

/// Removes what a samix run writes, and nothing else.
fn remove_run_entries(out: &Path) -> Result<()> {
    for name in RUN_ENTRIES {
        let path = out.join(name);
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else if path.exists() {
            std::fs::remove_file(&path)
        } else {
            continue;
        };
        result.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
