//! Stopping a run from outside: the [`StopSignal`] a signal handler sets, the guard that arms it
//! while the training loop runs, and the error a stopped run ends with. Touches no files.
use crate::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
    pub(super) fn arm(&self) -> Armed<'_> {
        self.armed.store(true, Ordering::SeqCst);
        Armed(self)
    }
}

/// Keeps a [`StopSignal`] armed; disarms it when dropped.
pub(super) struct Armed<'a>(&'a StopSignal);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.armed.store(false, Ordering::SeqCst);
    }
}

/// Whether a stop has been requested.
pub(super) fn stop_requested(stop: Option<&StopSignal>) -> bool {
    stop.is_some_and(StopSignal::is_requested)
}

/// The error a stopped run ends with: where it stopped, the checkpoint (`None`: another
/// process, rank 0, wrote it), how to continue.
pub(super) fn interrupted(out: &Path, checkpoint: Option<&Path>, at: &str) -> Error {
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
