//! The `[mix]` options of online SAMix / AutoMix as a run file states them ([`SamixConfig`], with
//! optional parts), and the same with every part decided ([`SamixOptions`]), which is what the
//! algorithm reads. Defaults are the reference's CIFAR-100 ResNet-18 settings (docs/ALGORITHM.md
//! §3.6–§3.7, §4), stated once here. Every SAMix key of a run, supervised or self-supervised,
//! is in this one table and resolved once, for its [`Scenario`].
use super::ema::EmaConfig;
use super::mask_loss::MaskLossConfig;
use super::mixer::{MixerConfig, MixerVariant};
use super::scenario::{AreaRule, ContrastiveLoss, MaskAdjust, MixerLossConfig, Scenario, ScenarioLoss};
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
    /// Rescaling the backbone mask to its own λ's area: a probability per step (§3.3), or
    /// `"auto"`, every sample further than `mean_margin` from λ (§6.3). Unset: 0 supervised,
    /// `"auto"` self-supervised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_adjust: Option<MaskAdjust>,
    /// `mask_adjust = "auto"`: the tolerated distance of a mask's area from λ.
    pub mean_margin: f64,
    /// Mixer architecture (default: the variant's).
    pub mixer: Option<MixerConfig>,
    /// Mask regulariser (default: SAMix L1+Variance, AutoMix L1; margin 0.1, weight 0.1).
    pub mask_loss: Option<MaskLossConfig>,
    /// Loss of the Mixer branch: through the EMA critic when supervised (default: SAMix
    /// pair-local + 0.5·global, AutoMix soft CE), contrastive under `[ssl]` (default:
    /// local + 0.5·global).
    pub mixer_loss: Option<MixerLossConfig>,
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
            mask_adjust: None,
            mean_margin: DEFAULT_MEAN_MARGIN,
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
    /// The options for `scenario` with the variant's defaults filled in where this config leaves
    /// a part unset. A loss of the other scenario's kind resolves to this one's default; the
    /// run's checks ([`SamixConfig::check_scenario`]) refuse it first.
    pub fn resolve(&self, variant: MixerVariant, scenario: Scenario) -> SamixOptions {
        let defaults = match variant {
            MixerVariant::Samix => SamixOptions::samix(),
            MixerVariant::Automix => SamixOptions::automix(),
        };
        let mut mixer = self.mixer.clone().unwrap_or(defaults.mixer);
        mixer.variant = variant;
        let adjust = self.mask_adjust.unwrap_or_else(|| default_mask_adjust(scenario));
        let (mask_adjust, area_margin) = match adjust {
            MaskAdjust::Probability(p) => (p, None),
            MaskAdjust::Rule(AreaRule::Auto) => (0.0, Some(self.mean_margin)),
        };
        let (mixer_loss, contrastive_loss) = match self.mixer_loss.map(MixerLossConfig::split) {
            Some(ScenarioLoss::Supervised(l)) => (l, defaults.contrastive_loss),
            Some(ScenarioLoss::Contrastive(l)) => (defaults.mixer_loss, l),
            None => (defaults.mixer_loss, defaults.contrastive_loss),
        };
        SamixOptions {
            alpha: self.alpha,
            mask_stage: self.mask_stage,
            lam_margin: self.lam_margin,
            mask_adjust,
            area_margin,
            mixer,
            mask_loss: self.mask_loss.clone().unwrap_or(defaults.mask_loss),
            mixer_loss,
            contrastive_loss,
            ema: self.ema.clone(),
        }
    }

    /// This table with every part it leaves unset written out as [`SamixConfig::resolve`] and
    /// the Mixer's optimiser (from `[optim]`/`[schedule]`) decide it for `scenario`: what
    /// `samix config show` prints, so the sub-tables it promises are there with their values.
    pub fn resolved(
        &self,
        variant: MixerVariant,
        scenario: Scenario,
        optim: &OptimConfig,
        schedule: &ScheduleConfig,
    ) -> Self {
        let o = self.resolve(variant, scenario);
        let mixer_loss = match scenario {
            Scenario::Supervised => MixerLossConfig::from(ScenarioLoss::Supervised(o.mixer_loss)),
            Scenario::SelfSupervised => MixerLossConfig::from(ScenarioLoss::Contrastive(o.contrastive_loss)),
        };
        let mixer_optim = self.mixer_optim.optim(optim);
        SamixConfig {
            mask_adjust: Some(match o.area_margin {
                Some(_) => MaskAdjust::Rule(AreaRule::Auto),
                None => MaskAdjust::Probability(o.mask_adjust),
            }),
            mixer: Some(o.mixer),
            mask_loss: Some(o.mask_loss),
            mixer_loss: Some(mixer_loss),
            mixer_optim: MixerOptimConfig {
                lr: Some(mixer_optim.lr),
                min_lr: Some(self.mixer_optim.schedule(optim, schedule).min_lr),
                momentum: mixer_optim.momentum,
                weight_decay: Some(mixer_optim.weight_decay),
            },
            ..self.clone()
        }
    }

    /// Range checks for a backbone with `num_stages` stages; errors name the key under `mix`.
    pub fn check(&self, variant: MixerVariant, num_stages: usize) -> Result<()> {
        if !(0.0..1.0).contains(&self.mean_margin) {
            return Err(Error::config("mix.mean_margin", "must be in [0, 1)"));
        }
        if let Some(MaskAdjust::Probability(p)) = self.mask_adjust {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config("mix.mask_adjust", "is a probability in [0, 1], or \"auto\""));
            }
        }
        self.resolve(variant, Scenario::Supervised).check(num_stages)?;
        self.resolve(variant, Scenario::SelfSupervised).check(num_stages)?;
        self.mixer_optim.check()
    }

    /// Writes the scenario's choice into the keys left unset whose default depends on it, so a
    /// run directory's `config.toml` states what ran (`mask_adjust`).
    pub fn settle(&mut self, scenario: Scenario) {
        self.mask_adjust.get_or_insert_with(|| default_mask_adjust(scenario));
    }

    /// The keys that belong to the other scenario, refused by name.
    pub fn check_scenario(&self, scenario: Scenario) -> Result<()> {
        match (self.mixer_loss.map(MixerLossConfig::split), scenario) {
            (Some(ScenarioLoss::Contrastive(_)), Scenario::Supervised) => Err(Error::config(
                "mix.mixer_loss.kind",
                "global, local and local_global are SAMix-SSL's losses (with [ssl]); supervised: soft_ce, pair_local_global, bce_neg, decoupled",
            )),
            (Some(ScenarioLoss::Supervised(_)), Scenario::SelfSupervised) => Err(Error::config(
                "mix.mixer_loss.kind",
                "is a supervised Mixer loss; under [ssl] kind is global, local or local_global",
            )),
            _ => Ok(()),
        }
    }
}

/// `mix.mask_adjust` unset: off (probability 0) supervised, "auto" self-supervised (§3.3, §6.3).
fn default_mask_adjust(scenario: Scenario) -> MaskAdjust {
    match scenario {
        Scenario::Supervised => MaskAdjust::Probability(SamixOptions::samix().mask_adjust),
        Scenario::SelfSupervised => MaskAdjust::Rule(AreaRule::Auto),
    }
}

/// `mix.mean_margin` unset.
const DEFAULT_MEAN_MARGIN: f64 = 0.1;

impl crate::mix::PolicyConfig for SamixConfig {
    fn check(&self, num_stages: usize) -> Result<()> {
        SamixConfig::check(self, MixerVariant::Samix, num_stages)
    }
    fn build_input(&self) -> Result<Box<dyn crate::mix::MixPolicy + Send>> {
        Err(trained_online())
    }
}

/// Online AutoMix as written in a run file (`policy = "automix"`): the same table as SAMix's,
/// with AutoMix's defaults for the parts it leaves unset.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct AutomixConfig(pub SamixConfig);

impl std::ops::Deref for AutomixConfig {
    type Target = SamixConfig;
    fn deref(&self) -> &SamixConfig {
        &self.0
    }
}

impl crate::mix::PolicyConfig for AutomixConfig {
    fn check(&self, num_stages: usize) -> Result<()> {
        self.0.check(MixerVariant::Automix, num_stages)
    }
    fn build_input(&self) -> Result<Box<dyn crate::mix::MixPolicy + Send>> {
        Err(trained_online())
    }
}

fn trained_online() -> Error {
    Error::config(
        "mix.policy",
        "samix/automix train a Mixer online; they are run by the trainer, not as a per-batch policy",
    )
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
    /// The Mixer's optimiser settings: the backbone's rule, with this table's values where set
    /// and the backbone's elsewhere. Under SGD, Nesterov follows the backbone, and only where the
    /// Mixer keeps a momentum (`momentum` is SGD's: refused under AdamW by the config check).
    pub fn optim(&self, backbone: &OptimConfig) -> OptimConfig {
        let mut optim = OptimConfig {
            lr: self.lr.unwrap_or(backbone.lr),
            weight_decay: self.weight_decay.unwrap_or(backbone.weight_decay),
            ..backbone.clone()
        };
        if backbone.kind == crate::optim::OptimKind::Sgd {
            let momentum = self.momentum.unwrap_or(backbone.momentum());
            optim.momentum = Some(momentum);
            optim.nesterov = Some(backbone.nesterov() && momentum > 0.0);
        }
        optim
    }

    /// The Mixer's schedule: the backbone's annealing with its own floor (never above its own
    /// rate) and no warm-up, as the reference's separate Mixer scheduler runs it.
    pub fn schedule(&self, backbone_optim: &OptimConfig, backbone: &ScheduleConfig) -> ScheduleConfig {
        let lr = self.optim(backbone_optim).lr;
        ScheduleConfig { min_lr: self.min_lr.unwrap_or(backbone.min_lr).min(lr), ..backbone.without_warmup() }
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
    /// Probability of rescaling the backbone mask to its own λ's area (0 under the auto rule).
    pub mask_adjust: f64,
    /// The auto rule's margin: each sample whose first-image share is further than this from λ
    /// is rescaled, every step. `None`: the probability rule.
    pub area_margin: Option<f64>,
    pub mixer: MixerConfig,
    pub mask_loss: MaskLossConfig,
    /// Loss of the Mixer branch through the EMA critic (supervised).
    pub mixer_loss: MixupLoss,
    /// Loss of the Mixer branch through the key encoder (SAMix-SSL).
    pub contrastive_loss: ContrastiveLoss,
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
            area_margin: None,
            mixer: MixerConfig::default(),
            mask_loss: MaskLossConfig::samix(),
            mixer_loss: MixupLoss::PairLocalGlobal { eta: 0.5 },
            contrastive_loss: ContrastiveLoss::LocalGlobal { eta: 0.5 },
            ema: EmaConfig::default(),
        }
    }

    /// How the backbone mask is rescaled to its λ's area this step; `flag` is the step's draw
    /// for the probability rule.
    pub fn area_adjust<'a>(&self, flag: &'a tch::Tensor) -> super::AreaAdjust<'a> {
        match self.area_margin {
            Some(margin) => super::AreaAdjust::Auto { margin },
            None if self.mask_adjust > 0.0 => super::AreaAdjust::Flag(flag),
            None => super::AreaAdjust::Off,
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
        for eta in [self.mixer_loss.eta(), self.contrastive_loss.eta()].into_iter().flatten() {
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
