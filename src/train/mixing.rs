//! The one place a run's `[mix]` table turns into the objects that mix: an input policy, a
//! feature-level policy, PuzzleMix (which needs the model's saliency), or online SAMix/AutoMix
//! options. Training, `samix mix` and `bench` all build their mixing here; a plain input policy
//! builds itself from its table ([`crate::mix::PolicyConfig::build_input`]).
use super::model::Model;
use crate::config::MixConfig;
use crate::data::DatasetInfo;
use crate::mix::{AttentiveMix, AttentivemixConfig, FeatureMix, MixPolicy, MixedBatch, PuzzleMix};
use crate::rng::SamixRng;
use crate::samix::{MixerVariant, SamixConfig, SamixOptions, Scenario};
use crate::{Error, Result};
use tch::{Device, Tensor};

/// A per-batch input policy, built from a run's `[mix]` table.
pub struct Policy {
    name: &'static str,
    inner: Box<dyn MixPolicy + Send>,
}

impl Policy {
    /// The policy's name as a config writes it.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policy({})", self.name)
    }
}

impl MixPolicy for Policy {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        self.inner.mix(images, labels, rng)
    }
    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        self.inner.mix_on_device(images, labels)
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
    Online { config: Box<SamixConfig>, options: SamixOptions },
}

impl Mixing {
    /// The mixing `cfg` names for `scenario`, for data described by `info` with images
    /// `image_side` pixels a side; any network a policy consults (AttentiveMix+, SAMix-P) is loaded onto `device`, and a
    /// pre-trained Mixer is checked against the data's channels and image size. The one place a
    /// policy's kind decides how it is built; the plain input policies build themselves.
    pub fn from_config(
        cfg: &MixConfig,
        scenario: Scenario,
        info: &DatasetInfo,
        image_side: Option<i64>,
        device: Device,
    ) -> Result<Mixing> {
        Ok(match cfg {
            MixConfig::Samix(c) => {
                c.check_scenario(scenario)?;
                Mixing::Online { config: Box::new(c.clone()), options: c.resolve(MixerVariant::Samix, scenario) }
            }
            MixConfig::Automix(c) => {
                c.check_scenario(scenario)?;
                Mixing::Online { config: Box::new(c.0.clone()), options: c.resolve(MixerVariant::Automix, scenario) }
            }
            MixConfig::Puzzlemix(p) => {
                Mixing::Saliency(PuzzleMix::new(p.clone(), info.mean.clone(), info.std.clone())?)
            }
            MixConfig::Manifoldmix(c) => Mixing::Feature(c.build()?),
            MixConfig::Alignmix(c) => Mixing::Feature(c.build()?),
            MixConfig::Transmix(c) => Mixing::Feature(crate::mix::FeatureMix::Transmix(c.build()?)),
            MixConfig::SamixP(c) => {
                let policy = c.build(device)?;
                let side = image_side.ok_or_else(|| Error::config("data.augment.image_size", "needed for samix_p"))?;
                policy.pretrained().check_data(info.channels as i64, side)?;
                Mixing::Input(Policy { name: cfg.name(), inner: Box::new(policy) })
            }
            MixConfig::Attentivemix(c) => {
                let policy = attentive_mix(c, device)?;
                check_classifier_channels(policy.in_channels(), info)?;
                Mixing::Input(Policy { name: cfg.name(), inner: Box::new(policy) })
            }
            plain => Mixing::Input(Policy { name: plain.name(), inner: plain.table().build_input()? }),
        })
    }
}

/// The per-batch input policy `cfg` names; a policy holding a network (AttentiveMix+, SAMix-P)
/// loads it onto `device`. Fails, naming `mix.policy`, for mixing that needs the model.
pub fn input_policy(cfg: &MixConfig, device: Device) -> Result<Policy> {
    let inner: Box<dyn MixPolicy + Send> = match cfg {
        MixConfig::Attentivemix(c) => Box::new(attentive_mix(c, device)?),
        MixConfig::SamixP(c) => Box::new(c.build(device)?),
        plain => plain.table().build_input()?,
    };
    Ok(Policy { name: cfg.name(), inner })
}

/// AttentiveMix+ with its scorer: a samix weights file (architecture from the table) or the
/// classifier of a samix run or checkpoint folder.
pub fn attentive_mix(c: &AttentivemixConfig, device: Device) -> Result<AttentiveMix> {
    let (vs, net) = if c.checkpoint.is_file() {
        crate::model::interop::load_network(&c.checkpoint, &c.scorer_model(), device)?
    } else {
        Model::load_frozen(&c.checkpoint, device)?
    };
    c.build(vs, net)
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
