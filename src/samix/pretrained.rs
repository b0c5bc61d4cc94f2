//! SAMix-P (docs/ALGORITHM.md §7): a Mixer pre-trained by online SAMix, reused frozen on another task.
//! [`PretrainedMixer`] is the frozen encoder (the pre-training run's EMA network, with its BN
//! statistics) and Mixer, loaded from a run's artifact with every variable's name and shape
//! checked; [`SamixP`] is the mixing policy over it: per step λ ~ Beta(α, α), a pairing, the frozen
//! encoder's stage features (eval mode, no grad), the frozen Mixer's mask (eval mode: dropout
//! off, no grad), the backbone-branch post-processing of online SAMix (optional area adjustment,
//! the plain-mixup fallback for extreme λ), and the blend; [`SamixPConfig`] is its `[mix]` table.
//! Touches no parameter of the model it mixes for, and never updates its own.
use super::artifact::{MixerArtifact, WEIGHTS_FILE};
use super::draws::MixerDraws;
use super::mask::{apply_mask, backbone_mask};
use super::mixer::{Mixer, MixerShape};
use crate::mix::{mix_targets_t, MixPolicy, MixedBatch};
use crate::model::{Network, StagedNet};
use crate::rng::SamixRng;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

/// Channels and upsampling factor of the Mixer that reads stage `stage` of `net` on
/// `image_size`-pixel images; fails when the stage's side does not divide the image.
pub fn mixer_shape<N: StagedNet>(net: &N, stage: usize, image_size: i64, device: Device) -> Result<MixerShape> {
    let channels = net.stage_channels();
    let stage_channels = *channels.get(stage).ok_or_else(|| {
        Error::config("mix.mask_stage", format!("stage {stage} does not exist ({} stages)", channels.len()))
    })?;
    let zeros = Tensor::zeros([1, net.in_channels(), image_size, image_size], (Kind::Float, device));
    let probe = tch::no_grad(|| net.features(&zeros, false, &[stage]).1);
    let side = probe.first().map_or(1, |f| f.size()[3]).max(1);
    if image_size % side != 0 {
        let msg = format!("stage {stage} is {side} px wide, which does not divide the {image_size} px image");
        return Err(Error::config("mix.mask_stage", msg));
    }
    Ok(MixerShape { in_channels: stage_channels, scale: image_size / side })
}

/// The path of a dotted variable-name prefix (`"k."` → `root / "k"`).
fn path_of<'a>(root: nn::Path<'a>, prefix: &str) -> nn::Path<'a> {
    prefix.split('.').filter(|p| !p.is_empty()).fold(root, |path, part| path / part)
}

/// A frozen encoder and Mixer from a SAMix run.
pub struct PretrainedMixer {
    vs: VarStore,
    encoder: Network,
    mixer: Mixer,
    mask_stage: usize,
    image_size: i64,
    artifact: Option<MixerArtifact>,
    /// The reference route: encoder and Mixer run in train mode (see [`SamixPConfig::reference_route`]).
    train_mode: bool,
}

impl PretrainedMixer {
    /// Loads the Mixer artifact in `dir` (a finished SAMix run folder, or a folder holding its
    /// `mixer.json` and `mixer.safetensors`) onto `device`. Every variable the encoder and the
    /// Mixer hold must be in the weights file with the same shape and kind; a mismatch is an
    /// error naming the variable.
    pub fn load(dir: &Path, device: Device) -> Result<PretrainedMixer> {
        let artifact = MixerArtifact::read(dir)?;
        let mut vs = VarStore::new(device);
        let root = vs.root();
        let encoder = Network::new(
            &path_of(vs.root(), &artifact.encoder_prefix),
            &artifact.backbone,
            artifact.in_channels,
            artifact.num_classes,
        )?;
        let shape = mixer_shape(&encoder, artifact.mask_stage, artifact.image_size, device)?;
        if shape != artifact.shape {
            let msg = format!(
                "the encoder's stage {} gives a Mixer input {shape:?}, the artifact says {:?}",
                artifact.mask_stage, artifact.shape
            );
            return Err(Error::data(dir.join(super::artifact::METADATA_FILE), msg));
        }
        let mixer = Mixer::new(&path_of(root, &artifact.mixer_prefix), &artifact.mixer, shape);
        crate::files::load_checked(&mut vs, &dir.join(WEIGHTS_FILE))?;
        Ok(Self::frozen(vs, encoder, mixer, artifact.mask_stage, artifact.image_size, Some(artifact)))
    }

    /// An encoder and Mixer already built in `vs` (e.g. freshly initialised, to time the cost).
    pub fn from_parts(vs: VarStore, encoder: Network, mixer: Mixer, mask_stage: usize, image_size: i64) -> Self {
        Self::frozen(vs, encoder, mixer, mask_stage, image_size, None)
    }

    fn frozen(
        mut vs: VarStore,
        encoder: Network,
        mixer: Mixer,
        mask_stage: usize,
        image_size: i64,
        artifact: Option<MixerArtifact>,
    ) -> Self {
        vs.freeze();
        PretrainedMixer { vs, encoder, mixer, mask_stage, image_size, artifact, train_mode: false }
    }

    /// Runs the frozen encoder and Mixer in train mode (BN's batch statistics, its running ones
    /// drifting; the Mixer's dropout on), as the reference's frozen route does; still no grad.
    pub fn set_train_mode(&mut self, on: bool) {
        self.train_mode = on;
    }

    /// The metadata it was loaded with (`None` when built from parts).
    pub fn artifact(&self) -> Option<&MixerArtifact> {
        self.artifact.as_ref()
    }

    /// The frozen variables (encoder and Mixer), for tests and inspection.
    pub fn var_store(&self) -> &VarStore {
        &self.vs
    }

    /// Fails, naming the mismatch, unless this Mixer can mix `channels`-channel images of
    /// `image_size` pixels (what it was trained on). The number of classes may differ.
    pub fn check_data(&self, channels: i64, image_size: i64) -> Result<()> {
        let (want_c, want_s) = (self.encoder.in_channels(), self.image_size);
        if channels != want_c || image_size != want_s {
            let msg = format!(
                "the pre-trained Mixer reads {want_c}-channel {want_s}×{want_s} images; this data has {channels}-channel {image_size}×{image_size} images"
            );
            return Err(Error::config("mix.mixer", msg));
        }
        Ok(())
    }

    /// The frozen encoder's stage features the Mixer reads (eval mode unless
    /// [`PretrainedMixer::set_train_mode`]; no grad).
    pub fn features(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| self.encoder.features(x, self.train_mode, &[self.mask_stage]).1.remove(0))
    }

    /// `s`, the paired image's weight per pixel, for features `f`, pairing `perm` and λ (eval
    /// mode, dropout off, unless [`PretrainedMixer::set_train_mode`]; no grad).
    pub fn mask_from_features(&self, f: &Tensor, perm: &Tensor, lam: &Tensor) -> Tensor {
        tch::no_grad(|| self.mixer.mask(f, perm, lam, self.train_mode))
    }

    /// `s` for images `x` (see [`PretrainedMixer::mask_from_features`]).
    pub fn mask(&self, x: &Tensor, perm: &Tensor, lam: &Tensor) -> Tensor {
        self.mask_from_features(&self.features(x), perm, lam)
    }
}

/// `policy = "samix_p"`: SAMix-P with the frozen Mixer (and the encoder it reads) of a finished
/// SAMix run (docs/ALGORITHM.md §7).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamixPConfig {
    /// The SAMix run folder, or a folder with its `mixer.json` and `mixer.safetensors`.
    pub mixer: PathBuf,
    #[serde(default = "SamixPConfig::default_alpha")]
    pub alpha: f64,
    /// Probability of rescaling a mask to cover exactly λ.
    #[serde(default)]
    pub mask_adjust: f64,
    /// λ or 1−λ at most this gives plain mixup.
    #[serde(default = "SamixPConfig::default_lam_margin")]
    pub lam_margin: f64,
    /// The reference's only runnable route to a frozen pre-trained Mixer (its `AutoMixup` with an
    /// external `backbone_k` and a frozen mix block): the frozen encoder and Mixer in train mode
    /// (batch statistics, dropout on) and a plain cross-entropy on the clean images beside the
    /// mixup loss. Off: eval-mode frozen parts and the mixup loss alone (docs/ALGORITHM.md §7).
    #[serde(default)]
    pub reference_route: bool,
}

impl SamixPConfig {
    /// The Mixer of `mixer` with online SAMix's α and margin, no area adjustment.
    pub fn new(mixer: PathBuf, alpha: f64) -> Self {
        SamixPConfig { mixer, alpha, mask_adjust: 0.0, lam_margin: Self::default_lam_margin(), reference_route: false }
    }
    fn default_alpha() -> f64 {
        super::SamixOptions::samix().alpha
    }
    fn default_lam_margin() -> f64 {
        super::SamixOptions::samix().lam_margin
    }

    /// The policy, its Mixer and encoder loaded onto `device`.
    pub fn build(&self, device: Device) -> Result<SamixP> {
        let mut pretrained = PretrainedMixer::load(&self.mixer, device)?;
        pretrained.set_train_mode(self.reference_route);
        SamixP::new(pretrained, self.alpha, self.mask_adjust, self.lam_margin)
    }
}

impl crate::mix::PolicyConfig for SamixPConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        crate::mix::check_alpha(self.alpha)?;
        check_post_processing(self.mask_adjust, self.lam_margin)
    }
}

/// The ranges of SAMix-P's mask post-processing: `mask_adjust` a probability, `lam_margin` below ½.
fn check_post_processing(mask_adjust: f64, lam_margin: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&mask_adjust) {
        return Err(Error::config("mix.mask_adjust", "is a probability in [0, 1]"));
    }
    crate::samix::config::check_lam_margin(lam_margin)
}

/// The SAMix-P mixing policy over a [`PretrainedMixer`].
pub struct SamixP {
    mixer: PretrainedMixer,
    draws: MixerDraws,
    lam_margin: f64,
}

impl std::fmt::Debug for SamixP {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SamixP(α {}, mask_adjust {}, lam_margin {})",
            self.draws.alpha(),
            self.draws.mask_adjust(),
            self.lam_margin
        )
    }
}

impl SamixP {
    /// λ ~ Beta(`alpha`, `alpha`); with probability `mask_adjust` the mask is rescaled to cover
    /// exactly λ; λ or 1−λ at most `lam_margin` gives plain mixup.
    pub fn new(mixer: PretrainedMixer, alpha: f64, mask_adjust: f64, lam_margin: f64) -> Result<Self> {
        check_post_processing(mask_adjust, lam_margin)?;
        Ok(SamixP { draws: MixerDraws::new(alpha, mask_adjust)?, mixer, lam_margin })
    }

    pub fn pretrained(&self) -> &PretrainedMixer {
        &self.mixer
    }

    /// The mixed batch for draws already made (λ and the adjust flag as 0-dim tensors).
    fn mix_with(&self, images: &Tensor, labels: &Tensor, perm: Tensor, lam: &Tensor, adjust: &Tensor) -> MixedBatch {
        let s = self.mixer.mask(images, &perm, lam);
        let adjust = (self.draws.mask_adjust() > 0.0).then_some(adjust);
        let s = backbone_mask(s, lam, adjust, self.lam_margin);
        let mixed = apply_mask(images, &images.index_select(0, &perm), &s);
        let targets = mix_targets_t(labels, &perm, lam);
        MixedBatch { images: mixed, targets, first_weight: Some(-s + 1.0), pairing: Some(perm) }
    }
}

impl MixPolicy for SamixP {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let d = self.draws.one_branch(images.size()[0] as usize, rng, images.device());
        self.mix_with(images, labels, d.perm, &d.lam, &d.adjust)
    }

    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        let d = self.draws.one_branch_on_device(images.size()[0] as usize, images.device());
        Some(self.mix_with(images, labels, d.perm, &d.lam, &d.adjust))
    }
}
