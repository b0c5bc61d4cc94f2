//! The learning-rate schedule (`[schedule]`) as mmcv's `CosineAnnealingLrUpdaterHook` runs it for
//! the reference: cosine annealing from the base rate to `min_lr`, per epoch (`by_epoch`, the
//! reference's CNN recipe: fixed within an epoch) or per step (its transformer recipe), after an
//! optional linear warm-up that is always counted in steps and multiplies the annealed value:
//! `lr(t) = c(t)·(1 − (1 − t/W)(1 − warmup_ratio))` for step `t < W`. Touches nothing.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// `[schedule]`. Warm-up lasts `warmup_epochs` epochs (fractions allowed) or `warmup_steps`
/// steps, never both; none by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    pub min_lr: f64,
    /// Anneal once per epoch (true, the default) or at every step.
    pub by_epoch: bool,
    pub warmup_epochs: f64,
    pub warmup_steps: u64,
    /// The warm-up's first rate as a fraction of the annealed one (mmcv's `warmup_ratio`, whose
    /// default 0.1 this is; the reference's transformer configs use 1e-5).
    pub warmup_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig { min_lr: 0.0, by_epoch: true, warmup_epochs: 0.0, warmup_steps: 0, warmup_ratio: 0.1 }
    }
}

impl ScheduleConfig {
    /// Range checks against the base learning rate and the run's length.
    pub fn check(&self, base_lr: f64, epochs: usize) -> Result<()> {
        if !(self.min_lr >= 0.0 && self.min_lr <= base_lr) {
            return Err(Error::config("schedule.min_lr", "must be in [0, optim.lr]"));
        }
        if !(self.warmup_epochs >= 0.0 && self.warmup_epochs < epochs as f64) {
            return Err(Error::config("schedule.warmup_epochs", "must be in [0, train.epochs)"));
        }
        if self.warmup_steps > 0 && self.warmup_epochs > 0.0 {
            return Err(Error::config("schedule.warmup_steps", "and schedule.warmup_epochs: set one of the two"));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(Error::config("schedule.warmup_ratio", "must be in [0, 1]"));
        }
        Ok(())
    }

    /// The same schedule without a warm-up: the Mixer's in the reference, whose separate
    /// scheduler for the Mixer's parameters never reads the warm-up settings.
    pub fn without_warmup(&self) -> Self {
        ScheduleConfig { warmup_epochs: 0.0, warmup_steps: 0, ..self.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct CosineSchedule {
    pub base_lr: f64,
    pub epochs: usize,
    pub cfg: ScheduleConfig,
}

impl CosineSchedule {
    pub fn new(base_lr: f64, epochs: usize, cfg: &ScheduleConfig) -> Self {
        CosineSchedule { base_lr, epochs, cfg: cfg.clone() }
    }

    /// The learning rate for step `iter` (0-based) of `epoch` (0-based).
    pub fn lr(&self, epoch: usize, iter: usize, iters_per_epoch: usize) -> f64 {
        let iters = iters_per_epoch.max(1) as f64;
        let step = epoch as f64 * iters + iter as f64;
        // π·done/total in this order: the values (and so `metrics.jsonl`'s `lr`) of earlier
        // versions' by-epoch cosine, to the last bit.
        let (done, total) = match self.cfg.by_epoch {
            true => (epoch as f64, self.epochs as f64),
            false => (step, self.epochs as f64 * iters),
        };
        let (base, min) = (self.base_lr, self.cfg.min_lr);
        let annealed = min + (base - min) * (1.0 + (std::f64::consts::PI * done / total).cos()) / 2.0;
        let warmup = match self.cfg.warmup_steps {
            0 => self.cfg.warmup_epochs * iters,
            steps => steps as f64,
        };
        if step < warmup {
            annealed * (1.0 - (1.0 - step / warmup) * (1.0 - self.cfg.warmup_ratio))
        } else {
            annealed
        }
    }
}
