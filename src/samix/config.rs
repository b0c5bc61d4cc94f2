//! The `[mix]` options of online SAMix / AutoMix as a run file states them ([`SamixConfig`], with
//! optional parts), and the same with every part decided ([`SamixOptions`]), which is what the
//! algorithm reads. Defaults are the reference's CIFAR-100 ResNet-18 settings (docs/ALGORITHM.md
//! §3.6–§3.7, §4), stated once here.
use super::ema::EmaConfig;
use super::mask_loss::MaskLossConfig;
use super::mixer::{MixerConfig, MixerVariant};
use crate::loss::MixupLoss;
use crate::optim::{OptimConfig, ScheduleConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Online SAMix / AutoMix as written in a run file (`policy = "samix"` or `"automix"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SamixConfig {
    /// λ ~ Beta(α, α), two draws per step (Mixer branch, backbone branch).
    pub alpha: f64,
    /// 0-based stage whose output the Mixer reads (2 = stage-3 of a ResNet; WRN: 1).
    pub mask_stage: usize,
    /// Backbone branch falls back to plain mixup when λ or 1−λ is at most this.
    pub lam_margin: f64,
    /// Probability of rescaling the backbone mask to its own λ's area (§3.3).
    pub mask_adjust: f64,
    /// Mixer architecture (default: the variant's).
    pub mixer: Option<MixerConfig>,
    /// Mask regulariser (default: SAMix L1+Variance, AutoMix L1; margin 0.1, weight 0.1).
    pub mask_loss: Option<MaskLossConfig>,
    /// Loss of the Mixer branch through the EMA critic (default: SAMix pair-local + 0.5·global,
    /// AutoMix soft CE).
    pub mixer_loss: Option<MixupLoss>,
    /// Optimiser settings of the Mixer's parameters (unset fields follow `[optim]`/`[schedule]`).
    pub mixer_optim: MixerOptimConfig,
    pub ema: EmaConfig,
    /// Write a grid of pairs, masks and mixed images every N epochs (0 = only after the last).
    pub visual_every: usize,
}

impl Default for SamixConfig {
    fn default() -> Self {
        let o = SamixOptions::samix();
        SamixConfig {
            alpha: o.alpha,
            mask_stage: o.mask_stage,
            lam_margin: o.lam_margin,
            mask_adjust: o.mask_adjust,
            mixer: None,
            mask_loss: None,
            mixer_loss: None,
            mixer_optim: MixerOptimConfig::default(),
            ema: o.ema,
            visual_every: 10,
        }
    }
}

impl SamixConfig {
    /// The options with the variant's defaults filled in where this config leaves a part unset.
    pub fn resolve(&self, variant: MixerVariant) -> SamixOptions {
        let defaults = match variant {
            MixerVariant::Samix => SamixOptions::samix(),
            MixerVariant::Automix => SamixOptions::automix(),
        };
        let mut mixer = self.mixer.clone().unwrap_or(defaults.mixer);
        mixer.variant = variant;
        SamixOptions {
            alpha: self.alpha,
            mask_stage: self.mask_stage,
            lam_margin: self.lam_margin,
            mask_adjust: self.mask_adjust,
            mixer,
            mask_loss: self.mask_loss.clone().unwrap_or(defaults.mask_loss),
            mixer_loss: self.mixer_loss.clone().unwrap_or(defaults.mixer_loss),
            ema: self.ema.clone(),
        }
    }

    /// Range checks for a backbone with `num_stages` stages; errors name the key under `mix`.
    pub fn check(&self, variant: MixerVariant, num_stages: usize) -> Result<()> {
        self.resolve(variant).check(num_stages)?;
        self.mixer_optim.check()
    }
}

/// Optimiser settings of the Mixer's parameters; unset fields follow `[optim]` / `[schedule]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixerOptimConfig {
    pub lr: Option<f64>,
    pub min_lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
}

impl MixerOptimConfig {
    /// The Mixer's SGD settings: this table's values where set, the backbone's elsewhere.
    /// Nesterov follows the backbone, and only where the Mixer keeps a momentum.
    pub fn optim(&self, backbone: &OptimConfig) -> OptimConfig {
        let momentum = self.momentum.unwrap_or(backbone.momentum);
        OptimConfig {
            lr: self.lr.unwrap_or(backbone.lr),
            momentum,
            weight_decay: self.weight_decay.unwrap_or(backbone.weight_decay),
            nesterov: backbone.nesterov && momentum > 0.0,
        }
    }

    /// The Mixer's schedule: the backbone's, with its own floor (never above its own rate).
    pub fn schedule(&self, backbone_optim: &OptimConfig, backbone: &ScheduleConfig) -> ScheduleConfig {
        let lr = self.optim(backbone_optim).lr;
        ScheduleConfig { min_lr: self.min_lr.unwrap_or(backbone.min_lr).min(lr), ..backbone.clone() }
    }

    pub fn check(&self) -> Result<()> {
        let fail = |key: &str, msg: &str| Err(Error::config(format!("mix.mixer_optim.{key}"), msg));
        if self.lr.is_some_and(|v| !(v > 0.0 && v.is_finite() && (v as f32).is_finite())) {
            return fail("lr", "must be a positive number within f32's range (below 3.4e38)");
        }
        if self.min_lr.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return fail("min_lr", "must be a number >= 0");
        }
        if self.momentum.is_some_and(|v| !(0.0..1.0).contains(&v)) {
            return fail("momentum", "must be in [0, 1)");
        }
        if self.weight_decay.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return fail("weight_decay", "must be a number >= 0");
        }
        Ok(())
    }
}

/// Everything the SAMix step reads, with no part left to decide. [`SamixOptions::samix`] and
/// [`SamixOptions::automix`] are the reference's CIFAR settings of the two variants.
#[derive(Clone, Debug, PartialEq)]
pub struct SamixOptions {
    /// λ ~ Beta(α, α), two draws per step (Mixer branch, backbone branch).
    pub alpha: f64,
    /// 0-based stage whose output the Mixer reads.
    pub mask_stage: usize,
    /// Backbone branch falls back to plain mixup when λ or 1−λ is at most this.
    pub lam_margin: f64,
    /// Probability of rescaling the backbone mask to its own λ's area.
    pub mask_adjust: f64,
    pub mixer: MixerConfig,
    pub mask_loss: MaskLossConfig,
    /// Loss of the Mixer branch through the EMA critic.
    pub mixer_loss: MixupLoss,
    pub ema: EmaConfig,
}

impl Default for SamixOptions {
    fn default() -> Self {
        Self::samix()
    }
}

impl SamixOptions {
    /// SAMix: λ-encoded Mixer, L1+Variance mask loss, η-balanced pair-local + 0.5·global loss.
    pub fn samix() -> Self {
        SamixOptions {
            alpha: 2.0,
            mask_stage: 2,
            lam_margin: 0.08,
            mask_adjust: 0.0,
            mixer: MixerConfig::default(),
            mask_loss: MaskLossConfig::samix(),
            mixer_loss: MixupLoss::PairLocalGlobal { eta: 0.5 },
            ema: EmaConfig::default(),
        }
    }

    /// AutoMix: cross-attention Mixer, L1 mask loss, soft mixup CE.
    pub fn automix() -> Self {
        SamixOptions {
            mixer: MixerConfig::automix(),
            mask_loss: MaskLossConfig::automix(),
            mixer_loss: MixupLoss::SoftCe,
            ..Self::samix()
        }
    }

    /// Range checks for a backbone with `num_stages` stages; errors name the key under `mix`.
    pub fn check(&self, num_stages: usize) -> Result<()> {
        let fail = |key: &str, msg: String| Err(Error::config(key, msg));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return fail("mix.alpha", "must be a positive number (Beta(α, α))".into());
        }
        check_lam_margin(self.lam_margin)?;
        if !(0.0..=1.0).contains(&self.mask_adjust) {
            return fail("mix.mask_adjust", "is a probability in [0, 1]".into());
        }
        self.ema.check()?;
        self.mixer.check()?;
        self.mask_loss.check()?;
        if let Some(eta) = self.mixer_loss.eta() {
            if !(eta.is_finite() && eta >= 0.0) {
                return fail("mix.mixer_loss.eta", "must be a number >= 0".into());
            }
        }
        if self.mask_stage + 1 >= num_stages {
            return fail(
                "mix.mask_stage",
                format!("must be a stage before the last (0..{})", num_stages.saturating_sub(1)),
            );
        }
        Ok(())
    }
}

/// `mix.lam_margin`: the backbone branch falls back to plain mixup when λ or 1−λ is at most this,
/// so it is below 0.5; a negative value never falls back (the reference's AutoMix default, −1).
pub fn check_lam_margin(v: f64) -> Result<()> {
    if v.is_nan() || v >= 0.5 {
        return Err(Error::config("mix.lam_margin", "must be a number below 0.5 (negative: never fall back to mixup)"));
    }
    Ok(())
}
