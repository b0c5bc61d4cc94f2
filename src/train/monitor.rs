//! What a run shows and records while it trains: a progress bar (terminal) or plain progress
//! lines (logs, CI, batch jobs), each with the epoch's and the run's ETA, and the TensorBoard
//! events (`[log]`). The loss is read from the device only when something is shown or recorded
//! (every [`LOG_EVERY`] steps, or when a line is due), so the hot path keeps no host sync.
use super::metrics::EpochMetrics;
use crate::config::LogConfig;
use crate::tensorboard::EventWriter;
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::Tensor;

/// How often (in steps) the loss is read back for the bar and the TensorBoard step scalars.
pub const LOG_EVERY: u64 = 20;

/// How a run shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar per epoch with step, loss, images/s and ETAs (an interactive terminal).
    Bar,
    /// A plain line at most every `log.progress_every_s` seconds (logs, CI, batch jobs).
    Lines,
    /// No progress output; the epoch lines only.
    Off,
}

/// Where a step is, for the progress output.
pub struct StepView<'a> {
    pub epoch: usize,
    pub total_epochs: usize,
    /// 0-based step within the epoch, and the epoch's steps.
    pub iter: usize,
    pub iters: usize,
    /// The step the epoch started at in this call (> 0 when resumed mid-epoch).
    pub first_iter: usize,
    /// Steps taken in the run, this one included, and the run's total.
    pub global_step: u64,
    pub total_steps: u64,
    pub loss: &'a Tensor,
    pub lr: f64,
    /// Images trained on in this epoch so far (in this call; over all processes).
    pub images: usize,
}

pub struct Monitor {
    progress: Progress,
    line_every: Duration,
    tensorboard: Option<EventWriter>,
    bar: Option<indicatif::ProgressBar>,
    epoch_started: Instant,
    last_line: Instant,
    call_started: Instant,
    steps_this_call: u64,
}

/// `h:mm:ss` (or `m:ss`).
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

impl Monitor {
    /// Opens the TensorBoard event file in `<out>/tensorboard/` when `[log]` asks for one.
    pub fn new(progress: Progress, log: &LogConfig, out: &Path) -> Result<Self> {
        let tensorboard = if log.tensorboard { Some(EventWriter::create(&out.join("tensorboard"))?) } else { None };
        let now = Instant::now();
        Ok(Monitor {
            progress,
            line_every: Duration::from_secs_f64(log.progress_every_s),
            tensorboard,
            bar: None,
            epoch_started: now,
            last_line: now,
            call_started: now,
            steps_this_call: 0,
        })
    }

    pub fn start_epoch(&mut self, epoch: usize, total_epochs: usize, iters: usize, first_iter: usize) {
        self.epoch_started = Instant::now();
        if self.progress != Progress::Bar {
            return;
        }
        let bar = indicatif::ProgressBar::new(iters as u64);
        let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, total_epochs));
        bar.set_position(first_iter as u64);
        self.bar = Some(bar);
    }

    /// After each training step.
    pub fn step(&mut self, s: &StepView) -> Result<()> {
        self.steps_this_call += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        let bar_due = self.bar.is_some() && (s.iter as u64).is_multiple_of(LOG_EVERY);
        let board_due = self.tensorboard.is_some() && s.global_step.is_multiple_of(LOG_EVERY);
        let line_due = self.progress == Progress::Lines && self.last_line.elapsed() >= self.line_every;
        if !(bar_due || board_due || line_due) {
            return Ok(());
        }
        let loss = s.loss.double_value(&[]);
        let epoch_secs = self.epoch_started.elapsed().as_secs_f64();
        let done_in_epoch = (s.iter + 1 - s.first_iter) as f64;
        let images_per_sec = s.images as f64 / epoch_secs.max(1e-9);
        let epoch_eta = Duration::from_secs_f64(epoch_secs / done_in_epoch * (s.iters - s.iter - 1) as f64);
        // Over the whole call, so that evaluation time is part of the rate.
        let per_step = self.call_started.elapsed().as_secs_f64() / self.steps_this_call as f64;
        let run_eta = Duration::from_secs_f64(per_step * s.total_steps.saturating_sub(s.global_step) as f64);
        if let (true, Some(bar)) = (bar_due, &self.bar) {
            bar.set_message(format!(
                "loss {loss:.3} lr {:.4} {images_per_sec:.0} img/s run ETA {}",
                s.lr,
                clock(run_eta)
            ));
        }
        if line_due {
            self.last_line = Instant::now();
            tracing::info!(
                "epoch {}/{} step {}/{}  loss {loss:.4}  lr {:.4}  {images_per_sec:.0} img/s  ETA {} (run {})",
                s.epoch + 1,
                s.total_epochs,
                s.iter + 1,
                s.iters,
                s.lr,
                clock(epoch_eta),
                clock(run_eta)
            );
        }
        if let (true, Some(tb)) = (board_due, self.tensorboard.as_mut()) {
            tb.scalar("step/train_loss", s.global_step, loss)?;
            tb.scalar("step/lr", s.global_step, s.lr)?;
        }
        Ok(())
    }

    /// The epoch stopped part-way (a stop request): the bar stays as it was.
    pub fn abandon_epoch(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }

    /// After an epoch's evaluation: clears the bar and records the epoch's metrics and the
    /// pictures the learner wrote (as images named after their file's first word).
    pub fn end_epoch(&mut self, m: &EpochMetrics, pictures: &[PathBuf]) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let Some(tb) = self.tensorboard.as_mut() else { return Ok(()) };
        let step = m.epoch as u64;
        let figures = [
            ("train_loss", m.train_loss),
            ("test_loss", m.test_loss),
            ("test_acc1", m.test_acc1),
            ("test_acc5", m.test_acc5),
            ("lr", m.lr),
            ("images_per_sec", m.images_per_sec),
        ];
        for (name, value) in figures.into_iter().chain(m.extra.iter().map(|(k, v)| (k.as_str(), *v))) {
            tb.scalar(&format!("epoch/{name}"), step, value)?;
        }
        for png in pictures {
            let stem = png.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let name = stem.split('_').next().unwrap_or("picture");
            tb.image_file(&format!("pictures/{name}"), step, png)?;
        }
        tb.flush()
    }
}
