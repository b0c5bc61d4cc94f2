//! One epoch of a run: a learner step per batch (the loss kept on the device, a non-finite loss
//! noted without a host sync, a stop request honoured at the next step boundary), then the
//! evaluation, the metrics line and the learner's per-epoch files. Writes `metrics.jsonl` and
//! what the learner writes; reads data only through the loaders.
use super::checkpoint::PartialEpoch;
use super::learner::{Learner, StepContext};
use super::metrics::{self, EpochMetrics};
use super::monitor::{Monitor, StepView};
use super::replicas::Replicas;
use super::stop::{stop_requested, StopSignal};
use crate::config::TrainConfig;
use crate::data::loader::Loader;
use crate::rng::{stream, SamixRng, Stream};
use crate::{Error, Result};
use std::path::Path;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What every epoch of a run shares.
pub(super) struct EpochRun<'a> {
    pub config: &'a TrainConfig,
    pub out: &'a Path,
    pub train_loader: &'a Loader,
    pub test_loader: &'a Loader,
    pub stop: Option<&'static StopSignal>,
    pub replicas: &'a Replicas,
    /// Whether this process writes the run directory (rank 0, or the only process).
    pub writes: bool,
}

/// How an epoch ended: completed (evaluated, its metrics appended), or stopped part-way.
pub(super) enum EpochEnd {
    Completed(EpochMetrics),
    Interrupted(PartialEpoch),
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

/// The running state of an epoch's steps, on the device until the epoch ends.
struct Steps {
    rng: SamixRng,
    loss_sum: Tensor,
    /// The first step of the epoch whose loss was not finite (−1: none), kept on the device so
    /// that checking every step costs no host sync; read once with the epoch's loss.
    first_bad: Tensor,
    first_step: usize,
    images: usize,
    lr: f64,
    /// The step a stop request ended the epoch before (none: it ran to its end).
    stopped_at: Option<usize>,
}

impl EpochRun<'_> {
    /// Trains one epoch (or the rest of one, `resumed`), evaluates, reports and appends its
    /// metrics, and lets the learner write its per-epoch files; or stops part-way on request.
    pub(super) fn epoch(
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
        let trained = self.train(learner, epoch, global_step, resumed, monitor)?;
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
        let m = self.metrics(learner, epoch, &trained, epoch_start)?;
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

    /// The state an epoch's steps start from: its mixing stream (each rank mixes its own batch
    /// with its own draws; rank 0's are those of one process), and where a resumed epoch was.
    fn start_steps(&self, epoch: usize, resumed: Option<&PartialEpoch>) -> Result<Steps> {
        let (rank, _) = self.replicas.rank_and_world();
        let device = self.train_loader.device();
        let mut steps = Steps {
            rng: stream(self.config.seed, Stream::Mix, epoch as u64, rank as u64),
            loss_sum: Tensor::zeros([], (Kind::Float, device)),
            first_bad: Tensor::full([], -1, (Kind::Int64, device)),
            first_step: 0,
            images: 0,
            lr: 0.0,
            stopped_at: None,
        };
        if let Some(p) = resumed {
            if let Some(pos) = p.stream_pos_of(rank)? {
                steps.rng.set_word_pos(pos);
            }
            steps.loss_sum = Tensor::from(p.loss_sum as f32).to_device(device);
            steps.first_step = p.steps.min(self.train_loader.num_batches());
        }
        Ok(steps)
    }

    /// One pass over the training loader: a learner step per batch; the loss stays on the device
    /// and is read once at the end (and when the monitor shows or records it).
    fn train(
        &self,
        learner: &mut dyn Learner,
        epoch: usize,
        global_step: &mut u64,
        resumed: Option<&PartialEpoch>,
        monitor: &mut Monitor,
    ) -> Result<EpochTrain> {
        let started = Instant::now();
        let config = self.config;
        let iters = self.train_loader.num_batches();
        let total_steps = (iters * config.train.epochs) as u64;
        let (_, world) = self.replicas.rank_and_world();
        let mut s = self.start_steps(epoch, resumed)?;
        let device = self.train_loader.device();
        let mut batches = self.train_loader.epoch_from(epoch as u64, s.first_step);
        monitor.start_epoch(epoch, config.train.epochs, iters, s.first_step);
        for i in s.first_step..iters {
            // Ranks stop together: a stop any of them sees is everyone's.
            if self.replicas.any(stop_requested(self.stop))? {
                s.stopped_at = Some(i);
                break;
            }
            let Some(batch) = batches.next() else { break };
            let mut batch = batch?;
            if config.train.channels_last {
                batch.images = crate::native::to_channels_last(&batch.images)?;
            }
            let ctx = StepContext { epoch, iter: i, iters_per_epoch: iters, global_step: *global_step, total_steps };
            let (loss, step_lr) = learner.train_step(&batch, &ctx, &mut s.rng)?;
            self.replicas.after_step()?;
            s.lr = step_lr;
            let newly_bad = loss.isfinite().logical_not().logical_and(&s.first_bad.lt(0));
            s.first_bad = Tensor::full([], i as i64, (Kind::Int64, device)).where_self(&newly_bad, &s.first_bad);
            s.loss_sum += &loss;
            s.images += batch.len();
            *global_step += 1;
            monitor.step(&StepView {
                epoch,
                total_epochs: config.train.epochs,
                iter: i,
                iters,
                first_iter: s.first_step,
                global_step: *global_step,
                total_steps,
                loss: &loss,
                lr: s.lr,
                // Over all ranks (each reads as many per step).
                images: s.images * world,
            })?;
        }
        crate::data::loader::report_skipped(&format!("epoch {}", epoch + 1), &batches.skipped());
        let (loader_wait_s, seconds) = (batches.waited().as_secs_f64(), started.elapsed().as_secs_f64());
        self.finish(learner, s, iters, loader_wait_s, seconds)
    }

    /// The epoch's figures over the ranks, and how far it got if it was stopped.
    fn finish(&self, learner: &dyn Learner, s: Steps, iters: usize, wait: f64, seconds: f64) -> Result<EpochTrain> {
        let (sum, images) = self.replicas.epoch_loss_and_images(s.loss_sum.double_value(&[]), s.images as f64)?;
        // The earliest non-finite step any rank saw, so all ranks stop on the same verdict.
        let first_non_finite = self.replicas.earliest(usize::try_from(s.first_bad.int64_value(&[])).ok())?;
        let interrupted = match s.stopped_at {
            None => None,
            Some(steps) => {
                let positions = self.replicas.stream_positions(s.rng.get_word_pos())?;
                Some(PartialEpoch {
                    steps,
                    loss_sum: sum,
                    mix_stream_pos: positions[0].clone(),
                    rank_mix_stream_pos: positions[1..].to_vec(),
                    // Every rank resumes from the ranks' mean sums.
                    learner: self.replicas.epoch_sums(learner.epoch_progress())?,
                })
            }
        };
        Ok(EpochTrain {
            loss: sum / iters.max(1) as f64,
            images: images as usize,
            lr: s.lr,
            loader_wait_s: wait,
            seconds,
            first_step: s.first_step,
            first_non_finite,
            interrupted,
        })
    }

    /// Evaluates after an epoch and assembles its metrics line.
    fn metrics(
        &self,
        learner: &mut dyn Learner,
        epoch: usize,
        trained: &EpochTrain,
        epoch_start: Instant,
    ) -> Result<EpochMetrics> {
        let ev = learner.evaluate(self.test_loader)?;
        let extra = learner.epoch_extras();
        let (ev, mut extra) = self.replicas.reduce_epoch(ev, extra)?;
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
