//! Learning-rate schedule: linear warm-up per iteration, then mmcv's by-epoch cosine annealing
//! `lr(e) = min + (base − min)·(1 + cos(π·e/E))/2`, fixed within an epoch.
use super::ScheduleConfig;

#[derive(Clone, Debug)]
pub struct CosineSchedule {
    pub base_lr: f64,
    pub min_lr: f64,
    pub epochs: usize,
    pub warmup_epochs: f64,
    pub warmup_start_lr: f64,
}

impl CosineSchedule {
    pub fn new(base_lr: f64, epochs: usize, cfg: &ScheduleConfig) -> Self {
        CosineSchedule {
            base_lr,
            min_lr: cfg.min_lr,
            epochs,
            warmup_epochs: cfg.warmup_epochs,
            warmup_start_lr: cfg.warmup_start_lr,
        }
    }

    /// The learning rate for iteration `iter` (0-based) of `epoch` (0-based).
    pub fn lr(&self, epoch: usize, iter: usize, iters_per_epoch: usize) -> f64 {
        let cosine = self.min_lr
            + (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * epoch as f64 / self.epochs as f64).cos())
                / 2.0;
        let progress = epoch as f64 + iter as f64 / iters_per_epoch.max(1) as f64;
        if progress < self.warmup_epochs {
            let t = progress / self.warmup_epochs;
            self.warmup_start_lr + (cosine - self.warmup_start_lr) * t
        } else {
            cosine
        }
    }
}
