//! Regularisers on the Mixer's mask `s` (weight of the second image), docs/ALGORITHM.md §4.6. They tie
//! the mean area of the second image to 1−λ within a margin δ and (the variance forms) push masks
//! away from a flat λ-constant map. The reference averages over the whole batch (one m̄); the
//! per-sample form (one m̄ per sample, losses averaged) is an option.
use crate::native::compute_kind;
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskLossMode {
    /// `max(|1 − m̄ − λ| − δ, 0)` (AutoMix).
    L1,
    /// `max(|1 − m̄ − λ| − δ, 0) − 2·Var(s)` (SAMix).
    L1Variance,
    /// `max((1 − m̄ − λ)² − δ², 0) − 2·Var(s)`.
    L2Variance,
    /// `max(mean|s(s − 1)| − δ, 0)`.
    Sparsity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskLossConfig {
    pub mode: MaskLossMode,
    #[serde(default = "MaskLossConfig::default_margin")]
    pub margin: f64,
    #[serde(default = "MaskLossConfig::default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub per_sample: bool,
    /// Cosine-anneal the weight per step from `weight` to this (the reference's transformer
    /// configs: 0.1 → 0, its `CustomCosineAnnealingHook`); unset keeps `weight` throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_weight: Option<f64>,
}

impl MaskLossConfig {
    /// Range checks; errors name the key under `mix.mask_loss`.
    pub fn check(&self) -> crate::Result<()> {
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(crate::Error::config("mix.mask_loss.weight", "must be a number >= 0"));
        }
        if self.end_weight.is_some_and(|w| !(w.is_finite() && (0.0..=self.weight).contains(&w))) {
            return Err(crate::Error::config("mix.mask_loss.end_weight", "must be in [0, mix.mask_loss.weight]"));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            return Err(crate::Error::config(
                "mix.mask_loss.margin",
                "must be in [0, 1] (a margin on the mask's mean)",
            ));
        }
        Ok(())
    }

    /// What the configured weight is multiplied by before step `step` of `total`: 1 without an
    /// `end_weight`, else `(end + (weight − end)·(1 + cos(π·step/total))/2) / weight`.
    pub fn weight_scale(&self, step: u64, total: u64) -> f64 {
        match self.end_weight {
            Some(end) if self.weight > 0.0 => {
                let progress = step as f64 / total.max(1) as f64;
                let now = end + (self.weight - end) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0;
                now / self.weight
            }
            _ => 1.0,
        }
    }

    /// The mask loss `loss` as weighted before step `step` of `total` ([`Self::weight_scale`]):
    /// the same tensor without an `end_weight`. Both training steps (supervised and
    /// self-supervised) apply it to the term they computed.
    pub fn annealed(&self, loss: &tch::Tensor, step: u64, total: u64) -> tch::Tensor {
        match self.weight_scale(step, total) {
            1.0 => loss.shallow_clone(),
            scale => loss * scale,
        }
    }

    /// The reference's margin δ of the mask's mean area.
    fn default_margin() -> f64 {
        0.1
    }
    /// The reference's weight of the mask loss.
    fn default_weight() -> f64 {
        0.1
    }
    pub fn samix() -> Self {
        MaskLossConfig {
            mode: MaskLossMode::L1Variance,
            margin: Self::default_margin(),
            weight: Self::default_weight(),
            per_sample: false,
            end_weight: None,
        }
    }
    pub fn automix() -> Self {
        MaskLossConfig { mode: MaskLossMode::L1, ..Self::samix() }
    }
}

/// `weight × loss` for masks `s` (`N×1×H×W`) generated for λ (the first image's weight; a
/// 0-dim tensor on `s`'s device or a host scalar).
pub fn mask_loss(s: &Tensor, lam: &Tensor, cfg: &MaskLossConfig) -> Tensor {
    let n = s.size()[0];
    // Rows = the groups whose mean is constrained: one row for the batch, or one per sample.
    let rows = if cfg.per_sample { s.reshape([n, -1]) } else { s.reshape([1, -1]) };
    let kind = compute_kind(s.kind());
    let mean = rows.mean_dim(1, true, kind);
    let var = (&rows - &mean).square().mean_dim(1, false, kind);
    let mean = mean.squeeze_dim(1);
    let gap: Tensor = 1.0 - mean - lam.to_kind(kind);
    let delta = cfg.margin;
    let per_row = match cfg.mode {
        MaskLossMode::L1 => (gap.abs() - delta).relu(),
        MaskLossMode::L1Variance => (gap.abs() - delta).relu() - var * 2.0,
        MaskLossMode::L2Variance => (gap.square() - delta * delta).relu() - var * 2.0,
        MaskLossMode::Sparsity => ((&rows * (&rows - 1.0)).abs().mean_dim(1, false, kind) - delta).relu(),
    };
    per_row.mean(kind) * cfg.weight
}
