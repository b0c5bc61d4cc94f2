//! The run directory: created for a new run, kept for `--resume`, replaced with `--force` (only
//! when it looks like a samix run).
use crate::{Error, Result};
use std::path::Path;

/// Prepares the run directory: new, resumed, or replaced with `--force`.
pub fn prepare(out: &Path, resume: bool, force: bool) -> Result<()> {
    if out.exists() && !resume {
        let is_empty = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_none();
        if !is_empty {
            if !force {
                return Err(Error::run(
                    out,
                    "run directory exists; pass --resume to continue it or --force to replace it",
                ));
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
