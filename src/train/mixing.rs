//! The one place a run's `[mix]` table turns into the objects that mix: an input policy, a
//! feature-level policy, PuzzleMix (which needs the model's saliency), or online SAMix/AutoMix
//! options. Training, `samix mix` and `bench` all build their mixing here.
use super::model::Model;
use crate::config::MixConfig;
use crate::data::DatasetInfo;
use crate::mix::{
    AlignMix, AttentiveMix, CutMix, FMix, FeatureMix, GridMix, ManifoldMix, MixPolicy, MixUp, MixedBatch, MixupCutmix,
    NoMix, PuzzleMix, ResizeMix, SaliencyMix, SmoothMix,
};
use crate::rng::SamixRng;
use crate::samix::{MixerVariant, PretrainedMixer, SamixConfig, SamixOptions, SamixP};
use crate::{Error, Result};
use tch::{Device, Tensor};

/// The per-batch input policies, as one type: what a run's `[mix]` table turns into.
#[derive(Debug)]
// A handful are built per run and each call dispatches once; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum Policy {
    AttentiveMix(AttentiveMix),
    None(NoMix),
    MixUp(MixUp),
    CutMix(CutMix),
    ResizeMix(ResizeMix),
    GridMix(GridMix),
    SmoothMix(SmoothMix),
    FMix(FMix),
    SaliencyMix(SaliencyMix),
    MixupCutmix(MixupCutmix),
    SamixP(Box<SamixP>),
}

impl Policy {
    fn inner(&self) -> &dyn MixPolicy {
        match self {
            Policy::None(p) => p,
            Policy::AttentiveMix(p) => p,
            Policy::MixUp(p) => p,
            Policy::CutMix(p) => p,
            Policy::ResizeMix(p) => p,
            Policy::GridMix(p) => p,
            Policy::SmoothMix(p) => p,
            Policy::FMix(p) => p,
            Policy::SaliencyMix(p) => p,
            Policy::MixupCutmix(p) => p,
            Policy::SamixP(p) => p.as_ref(),
        }
    }
}

impl MixPolicy for Policy {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        self.inner().mix(images, labels, rng)
    }
    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        self.inner().mix_on_device(images, labels)
    }
}

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
    /// The mixing `cfg` names, for data described by `info` with images `image_side` pixels a
    /// side; any network a policy consults (AttentiveMix+, SAMix-P) is loaded onto `device`, and a
    /// pre-trained Mixer is checked against the data's channels and image size.
    pub fn from_config(cfg: &MixConfig, info: &DatasetInfo, image_side: Option<i64>, device: Device) -> Result<Mixing> {
        Ok(match cfg {
            MixConfig::Samix(c) => Mixing::Online { config: c.clone(), options: c.resolve(MixerVariant::Samix) },
            MixConfig::Automix(c) => Mixing::Online { config: c.clone(), options: c.resolve(MixerVariant::Automix) },
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
            _ => {
                let policy = input_policy(cfg, device)?;
                match &policy {
                    Policy::SamixP(p) => {
                        let side =
                            image_side.ok_or_else(|| Error::config("data.augment.image_size", "needed for samix_p"))?;
                        p.pretrained().check_data(info.channels as i64, side)?;
                    }
                    Policy::AttentiveMix(p) => check_classifier_channels(p.in_channels(), info)?,
                    _ => {}
                }
                Mixing::Input(policy)
            }
        })
    }
}

/// The per-batch input policy `cfg` names; a policy holding a network (AttentiveMix+) loads it
/// onto `device`. Fails, naming `mix.policy`, for mixing that needs the model.
pub fn input_policy(cfg: &MixConfig, device: Device) -> Result<Policy> {
    Ok(match cfg {
        MixConfig::Attentivemix { alpha, checkpoint, upsample_to, scorer_arch, scorer_stem } => {
            let (vs, net) = if checkpoint.is_file() {
                let config = crate::model::ModelConfig {
                    stem: scorer_stem.unwrap_or(crate::model::Stem::Imagenet),
                    ..crate::model::ModelConfig::new(scorer_arch.unwrap_or(crate::model::Arch::Resnet18))
                };
                crate::model::interop::load_network(checkpoint, &config, device)?
            } else {
                Model::load_frozen(checkpoint, device)?
            };
            Policy::AttentiveMix(AttentiveMix::new(*alpha, vs, net, upsample_to.map(|s| s as i64))?)
        }
        MixConfig::None => Policy::None(NoMix),
        MixConfig::Mixup { alpha, per_sample } => Policy::MixUp(MixUp::new(*alpha, *per_sample)?),
        MixConfig::Cutmix { alpha, no_repeat } => Policy::CutMix(CutMix::new(*alpha)?.no_repeat(*no_repeat)),
        MixConfig::Resizemix { alpha } => Policy::ResizeMix(ResizeMix::new(*alpha)?),
        MixConfig::Gridmix { alpha, reference } => Policy::GridMix(GridMix::new(*alpha)?.reference(*reference)),
        MixConfig::Smoothmix { alpha, reference } => Policy::SmoothMix(SmoothMix::new(*alpha)?.reference(*reference)),
        MixConfig::Fmix { alpha, decay_power, no_repeat } => {
            Policy::FMix(FMix::new(*alpha, *decay_power)?.no_repeat(*no_repeat))
        }
        MixConfig::Saliencymix { alpha } => Policy::SaliencyMix(SaliencyMix::new(*alpha)?),
        MixConfig::MixupCutmix { mixup_alpha, cutmix_alpha, prob, switch_prob, mode } => {
            Policy::MixupCutmix(MixupCutmix::new(*mixup_alpha, *cutmix_alpha, *prob, *switch_prob, *mode)?)
        }
        MixConfig::SamixP { mixer, alpha, mask_adjust, lam_margin } => {
            Policy::SamixP(Box::new(SamixP::new(PretrainedMixer::load(mixer, device)?, *alpha, *mask_adjust, *lam_margin)?))
        }
        MixConfig::Samix(_) | MixConfig::Automix(_) => {
            return Err(Error::config("mix.policy", "samix/automix train a Mixer online; they are run by the trainer, not as a per-batch policy"))
        }
        MixConfig::Manifoldmix { .. } | MixConfig::Alignmix { .. } | MixConfig::Puzzlemix(_) => {
            return Err(Error::config("mix.policy", "manifoldmix/alignmix/puzzlemix need the model (hidden features or input gradients); the trainer runs them"))
        }
    })
}

/// A classifier a policy consults must read the data's channel count.
pub fn check_classifier_channels(channels: i64, info: &DatasetInfo) -> Result<()> {
    if channels != info.channels as i64 {
        let msg = format!(
            "the checkpoint's classifier reads {channels}-channel images; this data ({}) has {}",
            info.name, info.channels
        );
        return Err(Error::config("mix.checkpoint", msg));
    }
    Ok(())
}
