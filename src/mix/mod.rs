//! Handcrafted mixing policies. Each takes a batch already on its device and a seeded host RNG,
//! and returns the mixed images with the label mix (y_a, y_b, λ per sample). Scalars (λ, box
//! position, the pairing) are drawn on the host; the pixels are mixed with tensor ops on the
//! batch's device. A policy never sees the model.
//!
//! Words, crate-wide: a *mask* is the partner image's per-pixel weight (the paper's `s`, what the
//! Mixer outputs and `mask_loss`/`mask_adjust` act on); the first image's weight, `1 − mask`, is a
//! *first weight* (`MixedBatch::first_weight`, [`blend`]'s argument, `*_first_weight` maps).
//!
//! Each policy's file also holds its `[mix]` table (`XxxConfig`: fields, defaults, range checks,
//! constructor) behind [`PolicyConfig`]; `crate::config::MixConfig` only lists them. Adding a
//! policy: its file here (policy + config + `impl PolicyConfig`), its `mod`/`pub use` lines
//! below, and one line in `MixConfig`'s list (see docs/DESIGN.md, "Adding a mixing policy").
mod attentivemix;
mod cutmix;
mod feature;
mod fmix;
mod graphcut;
mod gridmix;
mod mixup;
mod puzzlemix;
mod resizemix;
mod saliencymix;
mod smoothmix;
mod switch;
mod transmix;

pub use attentivemix::{AttentiveMix, AttentivemixConfig};
pub use cutmix::{
    box_first_weight, centered_box, cutmix_box, cutmix_box_on_device, paste_box, random_box, CutBox, CutMix,
    CutmixConfig,
};
pub use feature::{
    align, forward_mixing_at, sinkhorn_plan, AlignMix, AlignmixConfig, FeatureMix, ManifoldMix, ManifoldmixConfig,
};
pub use fmix::{fourier_first_weight, FMix, FmixConfig};
pub use graphcut::GridMrf;
pub use gridmix::{grid_mask, reference_grid_mask, GridMix, GridmixConfig, ReferenceGrid};
pub use mixup::{mix_images, MixUp, MixupConfig};
pub use puzzlemix::{input_saliency, transport_blocks, transport_plan, PuzzleMix, PuzzleMixConfig};
pub use resizemix::{ResizeMix, ResizemixConfig};
pub use saliencymix::{spectral_residual_saliency, SaliencyMix, SaliencymixConfig};
pub use smoothmix::{gaussian_blob, SmoothMix, SmoothmixConfig};
pub use switch::{LambdaMode, MixupCutmix, MixupCutmixConfig};
pub use transmix::{transmix_lambda, TransMix, TransmixConfig};

use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The label side of a mixed batch: sample n is `λ_n·onehot(y_a[n]) + (1−λ_n)·onehot(y_b[n])`.
#[derive(Debug)]
pub struct MixedTargets {
    pub y_a: Tensor,
    pub y_b: Tensor,
    /// Weight of `y_a`, shape `[N]`, f32, on the batch's device.
    pub lam: Tensor,
}

impl MixedTargets {
    /// Unmixed labels: λ = 1 for every sample.
    pub fn clean(labels: &Tensor) -> Self {
        let n = labels.size()[0];
        MixedTargets {
            y_a: labels.shallow_clone(),
            y_b: labels.shallow_clone(),
            lam: Tensor::ones([n], (Kind::Float, labels.device())),
        }
    }

    /// Dense mixed targets `N × K`, with label smoothing folded in (ε/K to every class).
    pub fn to_dense(&self, num_classes: i64, smoothing: f64) -> Tensor {
        let one = |y: &Tensor| y.one_hot(num_classes).to_kind(self.lam.kind());
        let lam = self.lam.unsqueeze(1);
        let mixed = one(&self.y_a) * &lam + one(&self.y_b) * (1.0 - &lam);
        mixed * (1.0 - smoothing) + smoothing / num_classes as f64
    }
}

#[derive(Debug)]
pub struct MixedBatch {
    pub images: Tensor,
    pub targets: MixedTargets,
    /// For mask-based policies: the per-pixel weight of the first image (1 − the mask), broadcastable to
    /// `N×1×H×W` (for pictures and tests; `None` for global blends such as MixUp).
    pub first_weight: Option<Tensor>,
    /// The pairing: sample n was mixed with sample `pairing[n]` (`None` when nothing was mixed).
    pub pairing: Option<Tensor>,
}

/// `x ⊙ m + x2 ⊙ (1 − m)` for a first-image weight map `m`.
pub fn blend(x: &Tensor, x2: &Tensor, first_weight: &Tensor) -> Tensor {
    x * first_weight + x2 * (-first_weight + 1.0)
}

/// A mixing policy: batch in, mixed batch out.
pub trait MixPolicy {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch;
    /// The same mix with every draw made on the images' device by libtorch's generator and no
    /// host round trip or data-dependent shape, so a captured CUDA graph of a training step
    /// draws afresh at each replay; `None` for policies that need the host.
    fn mix_on_device(&self, _images: &Tensor, _labels: &Tensor) -> Option<MixedBatch> {
        None
    }
}

/// What each policy's `[mix]` table offers a run: its checks and, for a policy that needs
/// nothing but its table, its constructor. Implemented by every `XxxConfig` beside its policy.
pub trait PolicyConfig {
    /// Range checks for a backbone with `num_stages` stages; errors name the key under `mix`.
    fn check(&self, num_stages: usize) -> Result<()>;

    /// The per-batch policy this table describes. Policies that consult a network (loaded onto
    /// a device), the model, or train a Mixer are built by the trainer and say so here.
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Err(Error::config("mix.policy", "needs a network or the model to mix; the trainer builds it"))
    }
}

/// `α` of a Beta(α, α) as a `[mix]` table states it: a positive number.
pub fn check_alpha(alpha: f64) -> Result<()> {
    if alpha.is_finite() && alpha > 0.0 {
        Ok(())
    } else {
        Err(Error::config("mix.alpha", "must be a positive number (Beta(α, α))"))
    }
}

/// No mixing: images unchanged, λ = 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMix;

/// `policy = "none"`: no keys of its own; another policy's keys are ignored, so switching a
/// config to the unmixed baseline is `--set mix.policy=none` alone.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NoMixConfig {}

impl PolicyConfig for NoMixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        Ok(())
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(NoMix))
    }
}

impl MixPolicy for NoMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, _rng: &mut SamixRng) -> MixedBatch {
        MixedBatch {
            images: images.shallow_clone(),
            targets: MixedTargets::clean(labels),
            first_weight: None,
            pairing: None,
        }
    }
    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        Some(MixedBatch {
            images: images.shallow_clone(),
            targets: MixedTargets::clean(labels),
            first_weight: None,
            pairing: None,
        })
    }
}

/// Beta(α, α), validated once at construction.
#[derive(Clone, Debug)]
pub struct LambdaSampler {
    alpha: f64,
    beta: Beta<f64>,
}

impl LambdaSampler {
    pub fn new(alpha: f64) -> Result<Self> {
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(Error::config("mix.alpha", format!("{alpha} is not a positive number")));
        }
        let beta = Beta::new(alpha, alpha).map_err(|e| Error::config("mix.alpha", e.to_string()))?;
        Ok(LambdaSampler { alpha, beta })
    }
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    pub fn sample(&self, rng: &mut SamixRng) -> f64 {
        self.beta.sample(rng)
    }
    /// Draws of shape `shape` (`&[]` for one 0-dim λ) as float tensors on `device`, from
    /// libtorch's generator: `G₁/(G₁+G₂)` with `Gᵢ ~ Gamma(α)`. Never touches the host, so a
    /// captured CUDA graph draws afresh at every replay; reproducible through
    /// `tch::manual_seed`, not through the run's streams.
    pub fn sample_on_device(&self, shape: &[i64], device: Device) -> Tensor {
        let mut both = vec![2];
        both.extend_from_slice(shape);
        let g = Tensor::full(both.as_slice(), self.alpha, (Kind::Float, device)).internal_standard_gamma();
        // Both gammas underflow to 0 only for tiny α; ½ is the limit of λ there.
        (g.select(0, 0) / g.sum_dim_intlist(0, false, Kind::Float)).nan_to_num(0.5, None, None)
    }
}

/// A random permutation of the batch: sample n is paired with sample `perm[n]`.
pub fn random_pairing(n: usize, rng: &mut SamixRng, device: Device) -> Tensor {
    let mut perm: Vec<i64> = (0..n as i64).collect();
    perm.shuffle(rng);
    crate::device::upload(&Tensor::from_slice(&perm), device)
}

/// As [`random_pairing`], redrawn (at most `redraws` times) while it pairs some image with
/// itself — the reference's `no_repeat` for CutMix and FMix; the last draw is kept if every one
/// had a fixed point (≈ 1% of batches of 100 after 10 redraws).
pub fn random_pairing_without_self(n: usize, redraws: usize, rng: &mut SamixRng, device: Device) -> Tensor {
    let mut perm: Vec<i64> = (0..n as i64).collect();
    for _ in 0..=redraws {
        perm.shuffle(rng);
        if n < 2 || perm.iter().enumerate().all(|(i, &p)| p != i as i64) {
            break;
        }
    }
    crate::device::upload(&Tensor::from_slice(&perm), device)
}

/// Redraws the reference allows a CutMix/FMix pairing with a fixed point.
pub const NO_REPEAT_REDRAWS: usize = 10;

/// As [`random_pairing`], drawn on `device` by libtorch's generator (see
/// [`LambdaSampler::sample_on_device`]).
pub fn random_pairing_on_device(n: usize, device: Device) -> Tensor {
    Tensor::randperm(n as i64, (Kind::Int64, device))
}

/// As [`mix_targets`] with λ a 0-dim tensor, either on the labels' device or a host scalar.
pub fn mix_targets_t(labels: &Tensor, perm: &Tensor, lam: &Tensor) -> MixedTargets {
    let n = labels.size()[0];
    let kind = crate::native::compute_kind(lam.kind());
    let lam = if lam.device() == labels.device() {
        lam.to_kind(kind).expand([n], false)
    } else {
        // A CPU scalar: reading it is not a device sync.
        Tensor::full([n], lam.double_value(&[]), (kind, labels.device()))
    };
    MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, perm), lam }
}

/// Labels of a batch-level mix: y_a = labels, y_b = labels[perm], λ broadcast to `[N]` as f32
/// (the kind [`MixedTargets::lam`] promises; an f64 λ would promote a caller's f32 loss to f64).
pub fn mix_targets(labels: &Tensor, perm: &Tensor, lam: f64) -> MixedTargets {
    mix_targets_t(labels, perm, &Tensor::from(lam as f32))
}

/// Why a policy that mixes through the model is not a per-batch input policy.
pub(crate) fn needs_the_model() -> Error {
    Error::config(
        "mix.policy",
        "manifoldmix/alignmix/puzzlemix/transmix need the model (hidden features, input gradients or attention); the trainer runs them",
    )
}

/// Logits of a mixed forward pass, its label mix, and where it mixed (0 = input, k = after stage k).
pub struct MixedForward {
    pub logits: Tensor,
    pub targets: MixedTargets,
    pub mixed_at: usize,
}
