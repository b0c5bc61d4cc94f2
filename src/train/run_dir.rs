//! The run directory: created for a new run (with a marker only samix writes), kept for
//! `--resume`, replaced with `--force` — only when the marker says samix made it, and then only
//! what samix writes is removed, by name, down into the folders it makes (`checkpoints/`,
//! `visuals/`, `tensorboard/`, `report/`, each removed once empty); anything else the user put
//! there stays, and the run says what it kept. The run's lock is [`super::run_lock`].
use super::checkpoint;
pub use super::run_lock::{lock, RunLock, HOLDER_FILE as LOCK};
use crate::files::{is_or_tmp_of, remove_written, tmp_path};
use crate::{Error, Result};
use std::path::Path;

/// The file that marks a folder as a samix run directory.
pub const MARKER: &str = ".samix-run";

/// The files a run writes at the top of its directory (each also under its temporary name).
/// Not the marker and the lock's holder file: they stay while a run is replaced.
const RUN_FILES: &[&str] = &[
    "config.toml",
    "seed",
    "metrics.jsonl",
    "summary.json",
    crate::samix::artifact::METADATA_FILE,
    crate::samix::artifact::WEIGHTS_FILE,
    super::ssl_learner::BACKBONE_FILE,
];

/// The folders a run makes at the top of its directory.
const RUN_FOLDERS: &[&str] = &["checkpoints", "visuals", "tensorboard", "report"];

/// The files of the run's report (`crate::report::write_report`, which `samix train` runs into
/// `report/`; listed here because that module depends on this one).
fn is_report_file(name: &str) -> bool {
    let chart = |n: &str| n.strip_prefix("top1_").is_some_and(|r| r.ends_with(".png"));
    is_or_tmp_of(name, |n| ["report.md", "loss.png", "top1.png", "lr.png"].contains(&n) || chart(n))
}

/// Whether samix writes the entry at `rel` (names from the run directory down; `dir`: a folder).
fn is_written(rel: &[&str], dir: bool) -> bool {
    let temporary = |name: &str| [MARKER, LOCK].iter().any(|f| tmp_path(Path::new(f)) == Path::new(name));
    match rel {
        [name] if !dir => is_or_tmp_of(name, |n| RUN_FILES.contains(&n)) || temporary(name),
        [name] => RUN_FOLDERS.contains(name) || *name == checkpoint::FIRST_STAGING,
        ["checkpoints", rest @ ..] => checkpoint::is_written(rest, dir),
        // Where a run's first checkpoint is put together with its `latest`.
        [staging, rest @ ..] if *staging == checkpoint::FIRST_STAGING => checkpoint::is_written(rest, dir),
        ["visuals", name] => !dir && super::visual::is_written_name(name),
        ["tensorboard", name] => !dir && crate::tensorboard::is_event_file_name(name),
        ["report", name] => !dir && is_report_file(name),
        _ => false,
    }
}

/// Prepares the run directory — new, resumed, or replaced with `--force` — and returns its lock,
/// held for the whole run. A samix run is locked before anything in it is touched; a folder samix
/// did not make is refused untouched.
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
        replace_run(out)?;
    }
    // `--resume` of a run that produced nothing yet (stopped before its first checkpoint, or never
    // started: no folder) starts it from the beginning, so a requeued job may always pass
    // --resume; anything else without a checkpoint is not a run to continue (restarting would
    // overwrite its results, or it is not a samix run).
    let startable = is_empty || (held.is_some() && !has_results(out));
    // A whole checkpoint counts even without `latest` (a writer stopped between the two).
    if resume && !startable && checkpoint::latest(out)?.is_none() {
        // Also after a first checkpoint that failed (a full disk): say what is safe (issue 24 R13).
        let msg = "--resume: no checkpoint was completed in this run (no checkpoints/latest), so there is nothing to continue from; `--force` starts it afresh safely (it removes only what samix wrote)";
        return Err(Error::run(out, msg));
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

/// `--force`: removes what a samix run writes, and nothing else; says in one line what it kept.
/// Refuses, deleting nothing, when a checkpoint folder holds something samix did not write (the
/// new run writes its checkpoint folders anew).
fn replace_run(out: &Path) -> Result<()> {
    let relative = |p: &Path| p.strip_prefix(out).unwrap_or(p).display().to_string();
    let foreign = checkpoint::foreign_entries(out)?;
    if !foreign.is_empty() {
        let msg = format!(
            "--force refuses: {} in a checkpoint folder, which the new run writes anew; move it out of checkpoints/ first; nothing was deleted",
            listing(foreign.iter().map(|p| relative(p)).collect())
        );
        return Err(Error::run(out, msg));
    }
    let kept: Vec<String> = remove_written(out, &is_written)?
        .iter()
        .map(|p| relative(p))
        .filter(|name| name != MARKER && name != LOCK)
        .collect();
    if !kept.is_empty() {
        let (count, noun) = (kept.len(), if kept.len() == 1 { "entry" } else { "entries" });
        tracing::warn!("{}: --force kept {count} {noun} samix did not write: {}", out.display(), listing(kept));
    }
    Ok(())
}

/// Names for a one-line message: the first few, then how many more.
fn listing(mut names: Vec<String>) -> String {
    const SHOWN: usize = 8;
    let more = names.len().saturating_sub(SHOWN);
    names.truncate(SHOWN);
    let list = names.join(", ");
    if more > 0 {
        format!("{list} and {more} more")
    } else {
        list
    }
}
