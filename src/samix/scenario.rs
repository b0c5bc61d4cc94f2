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
/// `local_global`, `global_local`; see [`ContrastiveLoss`]), by `kind`.
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
    GlobalLocal {
        #[serde(default = "MixerLossConfig::default_eta")]
        eta: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pos_extend: Option<PosExtend>,
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
            ScenarioLoss::Contrastive(ContrastiveLoss::GlobalLocal { eta, pos_extend }) => {
                MixerLossConfig::GlobalLocal { eta, pos_extend }
            }
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
            MixerLossConfig::GlobalLocal { eta, pos_extend } => {
                ScenarioLoss::Contrastive(ContrastiveLoss::GlobalLocal { eta, pos_extend })
            }
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
    /// `global + η·local`, the local term's positives optionally extended ([`PosExtend`]): the
    /// reference's `MoCoSAMix` with `main_mb_loss = "infoNCE"`, `auxi_mb_loss = "BCE"`,
    /// `weight_mb_auxi = η` and its `feat_pos_extend` (openmixup/models/selfsup/moco_samix.py).
    GlobalLocal { eta: f64, pos_extend: Option<PosExtend> },
}

/// The reference's `feat_pos_extend`: the local term's positive of each source becomes an
/// element-wise blend of that image's two views' keys, `n(u⊙k_pos + (1−u)⊙k_own)` — `k_pos` the
/// usual positive (the key of the view the sample does not contain), `k_own` the key of the view
/// it does — with `u ~ Beta(2, 2)` per element (interpolation), `1 + u` (extrapolation, past
/// `k_pos` away from `k_own`), or one of the two by a fair coin per step (`both`, the reference's
/// default). One `u` per image serves both its roles, as the reference draws it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PosExtend {
    Interpolation,
    Extrapolation,
    Both,
}

impl ContrastiveLoss {
    /// The weight η of the kind that has one.
    pub fn eta(&self) -> Option<f64> {
        match *self {
            ContrastiveLoss::LocalGlobal { eta } | ContrastiveLoss::GlobalLocal { eta, .. } => Some(eta),
            _ => None,
        }
    }

    /// The positive extension of the kind that has one.
    pub fn pos_extend(&self) -> Option<PosExtend> {
        match *self {
            ContrastiveLoss::GlobalLocal { pos_extend, .. } => pos_extend,
            _ => None,
        }
    }
}
