//! What differs between the two scenarios a Mixer trains in ([`Scenario`]): the named forms of
//! `[mix]`'s area rule ([`MaskAdjust`]) and the Mixer branch's loss of each scenario
//! ([`MixerLossConfig`], read as a [`ScenarioLoss`]). Types only; `samix::config` resolves them.
use crate::loss::MixupLoss;
use serde::{Deserialize, Serialize};

/// Where a Mixer trains: beside a classifier, or in self-supervised pre-training (`[ssl]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Supervised,
    SelfSupervised,
}

/// `mix.mask_adjust`: a probability, or a rule by name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged, expecting = "a probability in [0, 1] or \"auto\"")]
pub enum MaskAdjust {
    Probability(f64),
    Rule(AreaRule),
}

/// The named area rules of `mix.mask_adjust`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AreaRule {
    /// Every sample whose first-image share is further than `mean_margin` from λ (§6.3).
    Auto,
}

/// `mix.mixer_loss`: a supervised loss through the EMA critic (`soft_ce`, `pair_local_global`,
/// `bce_neg`, `decoupled`; see [`MixupLoss`]) or a SAMix-SSL contrastive one (`global`, `local`,
/// `local_global`; see [`ContrastiveLoss`]), by `kind`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MixerLossConfig {
    SoftCe,
    PairLocalGlobal {
        eta: f64,
    },
    BceNeg {
        eta: f64,
    },
    Decoupled {
        eta: f64,
    },
    Global,
    Local,
    LocalGlobal {
        #[serde(default = "MixerLossConfig::default_eta")]
        eta: f64,
    },
}

/// A `mix.mixer_loss` as the scenario it belongs to reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScenarioLoss {
    Supervised(MixupLoss),
    Contrastive(ContrastiveLoss),
}

impl From<ScenarioLoss> for MixerLossConfig {
    /// The table that states `loss` (the inverse of [`MixerLossConfig::split`]).
    fn from(loss: ScenarioLoss) -> Self {
        match loss {
            ScenarioLoss::Supervised(MixupLoss::SoftCe) => MixerLossConfig::SoftCe,
            ScenarioLoss::Supervised(MixupLoss::PairLocalGlobal { eta }) => MixerLossConfig::PairLocalGlobal { eta },
            ScenarioLoss::Supervised(MixupLoss::BceNeg { eta }) => MixerLossConfig::BceNeg { eta },
            ScenarioLoss::Supervised(MixupLoss::Decoupled { eta }) => MixerLossConfig::Decoupled { eta },
            ScenarioLoss::Contrastive(ContrastiveLoss::Global) => MixerLossConfig::Global,
            ScenarioLoss::Contrastive(ContrastiveLoss::Local) => MixerLossConfig::Local,
            ScenarioLoss::Contrastive(ContrastiveLoss::LocalGlobal { eta }) => MixerLossConfig::LocalGlobal { eta },
        }
    }
}

impl MixerLossConfig {
    fn default_eta() -> f64 {
        0.5
    }

    /// The loss, as the scenario that has it.
    pub fn split(self) -> ScenarioLoss {
        match self {
            MixerLossConfig::SoftCe => ScenarioLoss::Supervised(MixupLoss::SoftCe),
            MixerLossConfig::PairLocalGlobal { eta } => ScenarioLoss::Supervised(MixupLoss::PairLocalGlobal { eta }),
            MixerLossConfig::BceNeg { eta } => ScenarioLoss::Supervised(MixupLoss::BceNeg { eta }),
            MixerLossConfig::Decoupled { eta } => ScenarioLoss::Supervised(MixupLoss::Decoupled { eta }),
            MixerLossConfig::Global => ScenarioLoss::Contrastive(ContrastiveLoss::Global),
            MixerLossConfig::Local => ScenarioLoss::Contrastive(ContrastiveLoss::Local),
            MixerLossConfig::LocalGlobal { eta } => ScenarioLoss::Contrastive(ContrastiveLoss::LocalGlobal { eta }),
        }
    }
}

/// The Mixer branch's loss in SAMix-SSL (§5.5): the positives are the other views of the two
/// source images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ContrastiveLoss {
    /// `λ·InfoNCE(z, k_i) + (1 − λ)·InfoNCE(z, k_j)` against the queue.
    Global,
    /// A two-way softmax between the two positives only, fitted to (λ, 1 − λ).
    Local,
    /// `local + η·global` (the η-balanced loss; default, η = 0.5).
    LocalGlobal { eta: f64 },
}

impl ContrastiveLoss {
    /// The weight η of the kind that has one.
    pub fn eta(&self) -> Option<f64> {
        match *self {
            ContrastiveLoss::LocalGlobal { eta } => Some(eta),
            _ => None,
        }
    }
}
