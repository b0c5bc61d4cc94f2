//! The optimiser and its schedule: SGD with momentum run by torch's fused kernel ([`Sgd`]), the
//! per-epoch cosine learning rate with linear warm-up ([`CosineSchedule`]), and their config
//! tables `[optim]` and `[schedule]`. Touches parameters, their gradients and its own buffers.
pub mod schedule;
pub mod sgd;

pub use schedule::CosineSchedule;
pub use sgd::{ParamGroup, Sgd};

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// SGD hyper-parameters (`[optim]`); the defaults are the reference's CIFAR recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-4, nesterov: false }
    }
}

impl OptimConfig {
    /// Range checks; `table` names the config table in errors (`optim`, `mix.mixer_optim`).
    pub fn check(&self, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        // The rates live in f32 device scalars: a value beyond f32's range cannot be stored.
        if !(self.lr.is_finite() && self.lr > 0.0 && (self.lr as f32).is_finite()) {
            return Err(Error::config(key("lr"), "must be a positive number within f32's range (below 3.4e38)"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config(key("momentum"), "must be in [0, 1)"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(key("weight_decay"), "must be >= 0"));
        }
        if self.nesterov && self.momentum <= 0.0 {
            return Err(Error::config(key("nesterov"), format!("needs {table}.momentum > 0")));
        }
        Ok(())
    }
}

/// Cosine annealing per epoch from `optim.lr` to `min_lr` (mmcv's by-epoch rule), after an
/// optional linear warm-up counted in iterations (`[schedule]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    pub min_lr: f64,
    pub warmup_epochs: f64,
    /// Learning rate at the first warm-up iteration.
    pub warmup_start_lr: f64,
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
        if !(self.warmup_start_lr >= 0.0 && self.warmup_start_lr <= base_lr) {
            return Err(Error::config("schedule.warmup_start_lr", "must be in [0, optim.lr]"));
        }
        Ok(())
    }
}
