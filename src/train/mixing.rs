//! The one place a run's `[mix]` table turns into the objects that mix: an input policy, a
//! feature-level policy, PuzzleMix (which needs the model's saliency), or online SAMix/AutoMix
//! options. Training, `samix mix` and `bench` all build their mixing here.
use super::model::Model;
use crate::config::MixConfig;
use crate::data::DatasetInfo;
use crate::mix::{
    AlignMix, AttentiveMix, CutMix, FMix, FeatureMix, GridMix, ManifoldMix, MixUp, MixupCutmix, NoMix, Policy,
    PuzzleMix, ResizeMix, SaliencyMix, SmoothMix,
};
use crate::samix::{SamixConfig, SamixOptions};
use crate::{Error, Result};
use tch::Device;

/// How a run mixes.
pub enum Mixing {
    /// A per-batch policy on the input images.
    Input(Policy),
    /// Mixing inside the network (ManifoldMix, AlignMix).
    Feature(FeatureMix),
    /// PuzzleMix, guided by the model's input-gradient saliency.
    Saliency(PuzzleMix),
    /// Online SAMix or AutoMix: a Mixer trained with the classifier.
    Online { config: SamixConfig, options: SamixOptions },
}

impl Mixing {
    /// The mixing `cfg` names, for data described by `info`; any network a policy consults
    /// (AttentiveMix+) is loaded onto `device`.
    pub fn from_config(cfg: &MixConfig, info: &DatasetInfo, device: Device) -> Result<Mixing> {
        Ok(match cfg {
            MixConfig::Samix(c) | MixConfig::Automix(c) => {
                let options = cfg.online_mixer().ok_or_else(|| Error::config("mix.policy", "not an online Mixer"))?;
                Mixing::Online { config: c.clone(), options }
            }
            MixConfig::Puzzlemix(p) => {
                Mixing::Saliency(PuzzleMix::new(p.clone(), info.mean.clone(), info.std.clone())?)
            }
            MixConfig::Manifoldmix { alpha, points } => {
                Mixing::Feature(FeatureMix::Manifold(ManifoldMix::new(*alpha, points.clone())?))
            }
            MixConfig::Alignmix { alpha, epsilon, sinkhorn_iterations, alternate_manifold } => {
                let align = AlignMix::new(*alpha, *epsilon, *sinkhorn_iterations)?;
                Mixing::Feature(if *alternate_manifold {
                    FeatureMix::ManifoldOrAlign(ManifoldMix::new(*alpha, MixConfig::default_manifold_points())?, align)
                } else {
                    FeatureMix::Align(align)
                })
            }
            _ => Mixing::Input(input_policy(cfg, device)?),
        })
    }
}

/// The per-batch input policy `cfg` names; a policy holding a network (AttentiveMix+) loads it
/// onto `device`. Fails, naming `mix.policy`, for mixing that needs the model.
pub fn input_policy(cfg: &MixConfig, device: Device) -> Result<Policy> {
    Ok(match cfg {
        MixConfig::Attentivemix { alpha, checkpoint, upsample_to } => {
            let (vs, net) = Model::load_frozen(checkpoint, device)?;
            Policy::AttentiveMix(AttentiveMix::new(*alpha, vs, net, upsample_to.map(|s| s as i64))?)
        }
        MixConfig::None => Policy::None(NoMix),
        MixConfig::Mixup { alpha, per_sample } => Policy::MixUp(MixUp::new(*alpha, *per_sample)?),
        MixConfig::Cutmix { alpha } => Policy::CutMix(CutMix::new(*alpha)?),
        MixConfig::Resizemix { alpha } => Policy::ResizeMix(ResizeMix::new(*alpha)?),
        MixConfig::Gridmix { alpha } => Policy::GridMix(GridMix::new(*alpha)?),
        MixConfig::Smoothmix { alpha } => Policy::SmoothMix(SmoothMix::new(*alpha)?),
        MixConfig::Fmix { alpha, decay_power } => Policy::FMix(FMix::new(*alpha, *decay_power)?),
        MixConfig::Saliencymix { alpha } => Policy::SaliencyMix(SaliencyMix::new(*alpha)?),
        MixConfig::MixupCutmix { mixup_alpha, cutmix_alpha, prob, switch_prob, mode } => {
            Policy::MixupCutmix(MixupCutmix::new(*mixup_alpha, *cutmix_alpha, *prob, *switch_prob, *mode)?)
        }
        MixConfig::Samix(_) | MixConfig::Automix(_) => {
            return Err(Error::config("mix.policy", "samix/automix train a Mixer online; they are run by the trainer, not as a per-batch policy"))
        }
        MixConfig::Manifoldmix { .. } | MixConfig::Alignmix { .. } | MixConfig::Puzzlemix(_) => {
            return Err(Error::config("mix.policy", "manifoldmix/alignmix/puzzlemix need the model (hidden features or input gradients); the trainer runs them"))
        }
    })
}
