//! The exponential moving average of a network (docs/ALGORITHM.md §3.5): an EMA copy whose
//! parameters follow the online ones, `p_k ← m·p_k + (1 − m)·p_q`, with the reference's momentum
//! schedule. Touches only the EMA copy's variables.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, VarStore};
use tch::Tensor;

/// EMA momentum: `momentum` for the first `warmup_fraction` of the iterations, then the
/// reference's cosine rise `end − (end − base)·(cos(π·t/T) + 1)/2`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    pub momentum: f64,
    pub end_momentum: f64,
    pub warmup_fraction: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig { momentum: 0.999, end_momentum: 0.999999, warmup_fraction: 0.1 }
    }
}

impl EmaConfig {
    /// Momentum before iteration `t` of `total`.
    pub fn momentum_at(&self, t: u64, total: u64) -> f64 {
        let progress = t as f64 / total.max(1) as f64;
        if progress < self.warmup_fraction {
            self.momentum
        } else {
            self.end_momentum
                - (self.end_momentum - self.momentum) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
        }
    }

    pub fn check(&self) -> Result<()> {
        if !((0.0..=1.0).contains(&self.momentum) && (0.0..=1.0).contains(&self.end_momentum)) {
            return Err(Error::config("mix.ema", "momenta must be in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.warmup_fraction) {
            return Err(Error::config("mix.ema.warmup_fraction", "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// The dotted name prefix of a VarStore path (`"k."`; empty for the root).
pub fn path_prefix(path: &nn::Path) -> String {
    let parts: Vec<&str> = path.components().collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}.", parts.join("."))
    }
}

/// The (EMA parameter, online parameter) pairs of two copies of one architecture built under
/// two paths of a VarStore. Building it copies every online variable (BN statistics included)
/// into the EMA copy and freezes the copy.
#[derive(Debug)]
pub struct Ema {
    pairs: Vec<(Tensor, Tensor)>,
}

impl Ema {
    /// Pairs every variable under `ema` with the variable of the same name under `online`.
    /// Fails, naming it, when a variable has no counterpart or another shape.
    pub fn new(vs: &VarStore, online: &nn::Path, ema: &nn::Path) -> Result<Ema> {
        let (online_prefix, ema_prefix) = (path_prefix(online), path_prefix(ema));
        let vars = vs.variables();
        let mut names: Vec<&String> = vars.keys().filter(|n| n.starts_with(&ema_prefix)).collect();
        names.sort();
        let mut pairs = Vec::new();
        for name in names {
            let online_name = format!("{online_prefix}{}", &name[ema_prefix.len()..]);
            let q = vars.get(&online_name).ok_or_else(|| {
                Error::Argument(format!("EMA variable `{name}` has no online counterpart `{online_name}`"))
            })?;
            let mut k = vars[name].shallow_clone();
            if k.size() != q.size() {
                return Err(Error::Argument(format!(
                    "EMA variable `{name}` is {:?}, `{online_name}` {:?}",
                    k.size(),
                    q.size()
                )));
            }
            let is_param = q.requires_grad();
            tch::no_grad(|| {
                k.copy_(q);
                let _ = k.set_requires_grad(false);
            });
            if is_param {
                pairs.push((k, q.shallow_clone()));
            }
        }
        Ok(Ema { pairs })
    }

    /// `p_k ← m·p_k + (1 − m)·p_q` over parameters (BN running statistics are not among them), in
    /// torch's multi-tensor lerp kernel; m ≥ 1 leaves the EMA side as it is.
    pub fn update(&self, momentum: f64) -> Result<()> {
        if momentum >= 1.0 {
            return Ok(());
        }
        let (ema, online): (Vec<&Tensor>, Vec<&Tensor>) = self.pairs.iter().map(|(k, q)| (k, q)).unzip();
        tch::no_grad(|| crate::native::foreach_lerp(&ema, &online, 1.0 - momentum))
    }

    /// How many parameter tensors follow the online copy.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}
