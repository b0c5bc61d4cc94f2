//! The optimiser and its schedule: SGD with momentum or AdamW, run by torch's fused kernels, with
//! parameter-wise weight decay and gradient-norm clipping ([`Optimizer`]), the cosine learning
//! rate per epoch or per step with mmcv's linear warm-up ([`CosineSchedule`]), and their config tables `[optim]` and
//! `[schedule]`. Touches parameters, their gradients and its own buffers.
pub mod optimizer;
pub mod schedule;

pub use optimizer::{Optimizer, ParamGroup};
pub use schedule::{CosineSchedule, ScheduleConfig};

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The update rule of `[optim]`: SGD with momentum (the reference's CNN recipe) or AdamW (its
/// transformer and ConvNeXt recipe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimKind {
    #[default]
    Sgd,
    Adamw,
}

/// Optimiser settings (`[optim]`); the defaults are the reference's CIFAR recipe (SGD, lr 0.1,
/// momentum 0.9, weight decay 1e-4). Fields of the other rule are refused, naming them;
/// [`OptimConfig::settled`] writes the chosen rule's defaults out, so a run's `config.toml` says
/// what ran: SGD's `momentum` 0.9 and `nesterov` false, AdamW's `betas` [0.9, 0.999] and `eps`
/// 1e-8 (torch's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub kind: OptimKind,
    pub lr: f64,
    pub weight_decay: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub betas: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// Scale the gradients so their joint 2-norm is at most this before every update
    /// (torch.nn.utils.clip_grad_norm_; mmcv's `grad_clip.max_norm`). Unset: no clipping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// No weight decay on parameters of at most one dimension (normalisation scales and shifts,
    /// biases), as timm and the reference's transformer `paramwise_options` do.
    pub no_decay_1d: bool,
    /// No weight decay on parameters whose last name component is one of these (`cls_token`,
    /// `pos_embed`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_decay_names: Vec<String>,
}

impl Default for OptimConfig {
    /// The reference's CIFAR recipe, with the rule's own fields unset (a missing key must not
    /// read as set: AdamW refuses SGD's keys).
    fn default() -> Self {
        OptimConfig { momentum: None, nesterov: None, ..OptimConfig::sgd(0.1, 0.9, 1e-4, false) }
    }
}

impl OptimConfig {
    /// SGD with these settings (no clipping, decay on every parameter).
    pub fn sgd(lr: f64, momentum: f64, weight_decay: f64, nesterov: bool) -> Self {
        OptimConfig {
            kind: OptimKind::Sgd,
            lr,
            weight_decay,
            momentum: Some(momentum),
            nesterov: Some(nesterov),
            betas: None,
            eps: None,
            max_grad_norm: None,
            no_decay_1d: false,
            no_decay_names: Vec::new(),
        }
    }

    /// AdamW with torch's betas and eps (no clipping, decay on every parameter).
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        let sgd = OptimConfig::sgd(lr, 0.0, weight_decay, false);
        OptimConfig { kind: OptimKind::Adamw, momentum: None, nesterov: None, ..sgd }.settled()
    }

    /// SGD's momentum (0 under AdamW).
    pub fn momentum(&self) -> f64 {
        match self.kind {
            OptimKind::Sgd => self.momentum.unwrap_or(0.9),
            OptimKind::Adamw => 0.0,
        }
    }

    pub fn nesterov(&self) -> bool {
        self.kind == OptimKind::Sgd && self.nesterov.unwrap_or(false)
    }

    /// AdamW's constants.
    pub fn adamw_hyper(&self) -> crate::native::AdamwHyper {
        let [beta1, beta2] = self.betas.unwrap_or([0.9, 0.999]);
        crate::native::AdamwHyper { beta1, beta2, eps: self.eps.unwrap_or(1e-8), weight_decay: self.weight_decay }
    }

    /// The same settings with the rule's defaults written out (see the type's documentation).
    pub fn settled(mut self) -> Self {
        match self.kind {
            OptimKind::Sgd => {
                self.momentum = Some(self.momentum());
                self.nesterov = Some(self.nesterov());
            }
            OptimKind::Adamw => {
                let h = self.adamw_hyper();
                self.betas = Some([h.beta1, h.beta2]);
                self.eps = Some(h.eps);
            }
        }
        self
    }

    /// Whether `name` (a parameter's full path) is decayed with shape `size`.
    pub fn decays(&self, name: &str, size: &[i64]) -> bool {
        let last = name.rsplit('.').next().unwrap_or(name);
        let one_d = self.no_decay_1d && size.len() <= 1;
        !(one_d || self.no_decay_names.iter().any(|n| n == last))
    }

    /// Range checks; `table` names the config table in errors (`optim`, `mix.mixer_optim`).
    pub fn check(&self, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        // The rates live in f32 device scalars: a value beyond f32's range cannot be stored.
        if !(self.lr.is_finite() && self.lr > 0.0 && (self.lr as f32).is_finite()) {
            return Err(Error::config(key("lr"), "must be a positive number within f32's range (below 3.4e38)"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(key("weight_decay"), "must be >= 0"));
        }
        if self.max_grad_norm.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(Error::config(key("max_grad_norm"), "must be a positive number"));
        }
        match self.kind {
            OptimKind::Sgd => self.check_sgd(table),
            OptimKind::Adamw => self.check_adamw(table),
        }
    }

    fn check_sgd(&self, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        let only_adamw =
            |k: &str| Err(Error::config(key(k), format!("is AdamW's; set {table}.kind = \"adamw\" to use it")));
        if self.betas.is_some() {
            return only_adamw("betas");
        }
        if self.eps.is_some() {
            return only_adamw("eps");
        }
        if !(0.0..1.0).contains(&self.momentum()) {
            return Err(Error::config(key("momentum"), "must be in [0, 1)"));
        }
        if self.nesterov() && self.momentum() <= 0.0 {
            return Err(Error::config(key("nesterov"), format!("needs {table}.momentum > 0")));
        }
        Ok(())
    }

    fn check_adamw(&self, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        for (k, set) in [("momentum", self.momentum.is_some()), ("nesterov", self.nesterov.is_some())] {
            if set {
                return Err(Error::config(key(k), format!("is SGD's; {table}.kind = \"adamw\" has betas instead")));
            }
        }
        let h = self.adamw_hyper();
        if ![h.beta1, h.beta2].iter().all(|b| (0.0..1.0).contains(b)) {
            return Err(Error::config(key("betas"), "must be two numbers in [0, 1)"));
        }
        if !(h.eps.is_finite() && h.eps > 0.0) {
            return Err(Error::config(key("eps"), "must be a positive number"));
        }
        Ok(())
    }
}
