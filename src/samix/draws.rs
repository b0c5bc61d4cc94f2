//! The random draws of a step that mixes with a Mixer, in one place for every scenario (online
//! SAMix, SAMix-SSL, SAMix-P): λ ~ Beta(α, α), the pairings, and the flag that rescales a mask to
//! its λ's area (probability `mask_adjust`). From the run's seeded host stream (reproducible and
//! independent of the device), or on the device by libtorch's generator (nothing reaches the
//! host, so a captured CUDA graph draws afresh at each replay). Touches nothing.
use crate::mix::{random_pairing, random_pairing_on_device, LambdaSampler};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use tch::{Device, Kind, Tensor};

/// The random draws of a two-branch step. The λs and the adjust flag are 0-dim float tensors:
/// host scalars when drawn from the run's streams, device tensors when drawn on the device.
#[derive(Debug)]
pub struct Draws {
    pub lam_mb: Tensor,
    pub lam_bb: Tensor,
    pub perm_mb: Tensor,
    pub perm_bb: Tensor,
    /// 1 when this step rescales the backbone mask to its λ's area (probability `mask_adjust`).
    pub adjust_bb: Tensor,
}

/// One branch's draw (SAMix-P): λ, the pairing, the adjust flag.
pub struct BranchDraw {
    pub lam: Tensor,
    pub perm: Tensor,
    pub adjust: Tensor,
}

/// Which branch a two-branch host draw gives its first λ. Supervised SAMix has always drawn the
/// Mixer branch's first and SAMix-SSL the backbone branch's; both are kept so that every run's
/// draws stay what they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstLambda {
    MixerBranch,
    BackboneBranch,
}

/// Draws λ ~ Beta(α, α), pairings and the area-adjust flag.
#[derive(Clone, Debug)]
pub struct MixerDraws {
    lambda: LambdaSampler,
    mask_adjust: f64,
}

fn scalar(v: f64) -> Tensor {
    Tensor::from(v as f32)
}

impl MixerDraws {
    pub fn new(alpha: f64, mask_adjust: f64) -> Result<Self> {
        Ok(MixerDraws { lambda: LambdaSampler::new(alpha)?, mask_adjust })
    }

    pub fn alpha(&self) -> f64 {
        self.lambda.alpha()
    }

    /// The probability of the area-adjust flag.
    pub fn mask_adjust(&self) -> f64 {
        self.mask_adjust
    }

    /// The draws of a two-branch step for `n` images from the host stream, in the stream's
    /// order: two λ (`first` says whose is first), the backbone branch's pairing, the Mixer
    /// branch's pairing, the adjust flag.
    pub fn two_branches(&self, n: usize, rng: &mut SamixRng, device: Device, first: FirstLambda) -> Draws {
        let (a, b) = (self.lambda.sample(rng), self.lambda.sample(rng));
        let perm_bb = random_pairing(n, rng, device);
        let perm_mb = random_pairing(n, rng, device);
        let adjust = rng.gen::<f64>() < self.mask_adjust;
        let (lam_mb, lam_bb) = match first {
            FirstLambda::MixerBranch => (a, b),
            FirstLambda::BackboneBranch => (b, a),
        };
        Draws {
            lam_mb: scalar(lam_mb),
            lam_bb: scalar(lam_bb),
            perm_mb,
            perm_bb,
            adjust_bb: scalar(if adjust { 1.0 } else { 0.0 }),
        }
    }

    /// The same draws made on `device` by libtorch's generator.
    pub fn two_branches_on_device(&self, n: usize, device: Device) -> Draws {
        let (lam_mb, lam_bb) = (self.lambda.sample_on_device(&[], device), self.lambda.sample_on_device(&[], device));
        let perm_bb = random_pairing_on_device(n, device);
        let perm_mb = random_pairing_on_device(n, device);
        Draws { lam_mb, lam_bb, perm_mb, perm_bb, adjust_bb: self.flag_on_device(device) }
    }

    /// One branch's draw for `n` images from the host stream: λ, the pairing, the flag.
    pub fn one_branch(&self, n: usize, rng: &mut SamixRng, device: Device) -> BranchDraw {
        let lam = self.lambda.sample(rng);
        let perm = random_pairing(n, rng, device);
        let adjust = rng.gen::<f64>() < self.mask_adjust;
        BranchDraw { lam: scalar(lam), perm, adjust: scalar(if adjust { 1.0 } else { 0.0 }) }
    }

    /// The same draw made on `device` by libtorch's generator.
    pub fn one_branch_on_device(&self, n: usize, device: Device) -> BranchDraw {
        let lam = self.lambda.sample_on_device(&[], device);
        let perm = random_pairing_on_device(n, device);
        BranchDraw { lam, perm, adjust: self.flag_on_device(device) }
    }

    fn flag_on_device(&self, device: Device) -> Tensor {
        Tensor::rand([], (Kind::Float, device)).lt(self.mask_adjust).to_kind(Kind::Float)
    }
}
