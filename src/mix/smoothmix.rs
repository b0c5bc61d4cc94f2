//! SmoothMix (Lee et al. 2020): a Gaussian blob `g = exp(−‖p − c‖² / 2σ²)` (peak 1) with
//! σ = (U(0,1)/4 + ¼)·H and a uniformly random centre takes the paired image with weight g. The
//! label weight of the first image is the area it keeps, `1 − mean(g)` (the reference uses
//! `mean(g)` for the first label, which is the partner's share: docs/DESIGN.md fixes it). λ stays a
//! device tensor, so no host sync.
use super::{blend, random_pairing, MixPolicy, MixedBatch, MixedTargets};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// `policy = "smoothmix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmoothmixConfig {
    /// Not used by the mask (as the reference), but checked like every α.
    pub alpha: f64,
    /// The reference's label weight (the blob's mean, the partner's share, for the first label)
    /// and blob centre (half a pixel off a pixel's centre).
    #[serde(default)]
    pub reference: bool,
}

impl super::PolicyConfig for SmoothmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(SmoothMix::new(self.alpha)?.reference(self.reference)))
    }
}

#[derive(Clone, Debug, Default)]
pub struct SmoothMix {
    reference: bool,
}

impl SmoothMix {
    /// α is accepted for config symmetry with the reference, whose λ draw does not shape the mask.
    pub fn new(_alpha: f64) -> Result<Self> {
        Ok(SmoothMix { reference: false })
    }

    /// The reference's choices (docs/ALGORITHM.md §8): the first label weighted by the blob's mean
    /// (the partner's share), and the blob centred half a pixel off a pixel centre (its grid is
    /// rolled by whole pixels around a centre between pixels).
    pub fn reference(mut self, on: bool) -> Self {
        self.reference = on;
        self
    }
}

/// The blob `1×1×H×W` centred at pixel `(cy, cx)` (centres at half-pixel offsets) with σ `sigma`.
pub fn gaussian_blob(h: i64, w: i64, cy: f64, cx: f64, sigma: f64, device: Device) -> Tensor {
    let ys = Tensor::arange(h, (Kind::Float, device)).view([h, 1]) + 0.5 - cy;
    let xs = Tensor::arange(w, (Kind::Float, device)).view([1, w]) + 0.5 - cx;
    let d2 = ys.square() + xs.square();
    (d2 / (-2.0 * sigma * sigma)).exp().view([1, 1, h, w])
}

impl MixPolicy for SmoothMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let perm = random_pairing(n as usize, rng, images.device());
        let sigma = (rng.gen::<f64>() / 4.0 + 0.25) * h as f64;
        // Pixel centres are at k + ½; the reference's centre falls on a pixel corner.
        let offset = if self.reference { 0.0 } else { 0.5 };
        let (cy, cx) = (rng.gen_range(0..h) as f64 + offset, rng.gen_range(0..w) as f64 + offset);
        let g = gaussian_blob(h, w, cy, cx, sigma, images.device());
        let first = -&g + 1.0;
        let mixed = blend(images, &images.index_select(0, &perm), &first);
        let share = if self.reference { &g } else { &first };
        let lam = share.mean(Kind::Float).expand([n], false).contiguous();
        let targets = MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam };
        MixedBatch { images: mixed, targets, first_weight: Some(first), pairing: Some(perm) }
    }
}
