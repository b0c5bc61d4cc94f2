//! SAMix (docs/ALGORITHM.md §3–§4) in one place: the learnable [`Mixer`], its mask regularisers, the
//! post-processing of its masks, the EMA copy and its momentum schedule, the two-branch online
//! step ([`OnlineSamix`], generic over any [`StagedNet`](crate::model::StagedNet) backbone), its
//! options, the Mixer artifact, and SAMix-P (a pre-trained Mixer reused frozen as a policy). The Mixer branch ([`mixer_branch`]) and the backbone-branch
//! masks ([`backbone_branch`]) are free functions so that other scenarios (self-supervised SAMix,
//! a frozen pre-trained Mixer) reuse them. Touches only the networks it is given; optimisers,
//! schedules of the learning rate and run files belong to the caller.
pub mod artifact;
pub mod branches;
pub mod config;
pub mod draws;
pub mod ema;
pub mod mask;
pub mod mask_loss;
pub mod mixer;
pub mod online;
pub mod pretrained;
pub mod scenario;

pub use artifact::MixerArtifact;
pub use branches::{backbone_branch, mixer_branch, AreaAdjust, PairInputs};
pub use config::{AutomixConfig, MixerOptimConfig, SamixConfig, SamixOptions};
pub use draws::{BranchDraw, Draws, FirstLambda, MixerDraws};
pub use ema::{Ema, EmaConfig};
pub use mask::{adjust_area, apply_mask, backbone_mask};
pub use mask_loss::{mask_loss, MaskLossConfig, MaskLossMode};
pub use mixer::{lambda_encoding, lambda_encoding_t, Mixer, MixerConfig, MixerShape, MixerVariant, Upsample};
pub use online::{OnlineSamix, SamixLosses, SamixPaths, StepPlan, HEADS};
pub use pretrained::{mixer_shape, PretrainedMixer, SamixP, SamixPConfig};
pub use scenario::{AreaRule, ContrastiveLoss, MaskAdjust, MixerLossConfig, PosExtend, Scenario, ScenarioLoss};
