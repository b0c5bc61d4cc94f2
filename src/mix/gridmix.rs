//! GridMix (Baek et al. 2021), as the reference's CIFAR setting (SAMIX_SPEC.md §8): a crop region
//! of random area (50–100%) and aspect ratio (½–2) is tiled into `n_holes × ny` square patches; in
//! each patch a hole of side ratio √(1−λ) at the patch's top-left corner takes the paired image.
//! λ for the labels is the area the first image keeps. The mask's rectangles are laid out on the
//! host (a few dozen) and uploaded once; the blend runs on the batch's device.
use super::{blend, mix_targets, random_pairing, LambdaSampler, MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use tch::{Kind, Tensor};

#[derive(Clone, Debug)]
pub struct GridMix {
    lambda: LambdaSampler,
}

impl GridMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(GridMix { lambda: LambdaSampler::new(alpha)? })
    }
}

/// The partner-image mask (`h·w` values, row-major, 1 = partner) for hole side ratio `ratio`.
pub fn grid_mask(h: usize, w: usize, ratio: f64, rng: &mut SamixRng) -> Vec<f32> {
    let n_holes = rng.gen_range(2..=6usize);
    let area = rng.gen_range(0.5..=1.0) * (h * w) as f64;
    let aspect: f64 = rng.gen_range(0.5..=2.0);
    let cw = ((area / aspect).sqrt() as usize).clamp(1, w);
    let ch = ((cw as f64 * aspect) as usize).clamp(1, h);
    let (y0, x0) = (rng.gen_range(0..=h - ch), rng.gen_range(0..=w - cw));
    let patch_w = cw.div_ceil(n_holes).max(1);
    let patch_h = patch_w.max(1);
    let ny = ch.div_ceil(patch_h);
    let hole = |patch: usize| ((patch as f64 * ratio) as usize).clamp(1, patch.saturating_sub(1).max(1));
    let (hole_w, hole_h) = (hole(patch_w), hole(patch_h));
    let mut mask = vec![0f32; h * w];
    for j in 0..ny {
        for i in 0..n_holes {
            let (top, left) = (y0 + j * patch_h, x0 + i * patch_w);
            for y in top..(top + hole_h).min(y0 + ch).min(h) {
                for x in left..(left + hole_w).min(x0 + cw).min(w) {
                    mask[y * w + x] = 1.0;
                }
            }
        }
    }
    mask
}

impl MixPolicy for GridMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2] as usize, size[3] as usize);
        let perm = random_pairing(n, rng, images.device());
        let lam = self.lambda.sample(rng);
        let partner = grid_mask(h, w, (1.0 - lam).max(0.0).sqrt(), rng);
        let kept = 1.0 - partner.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64;
        let first: Vec<f32> = partner.iter().map(|v| 1.0 - v).collect();
        let mask =
            Tensor::from_slice(&first).view([1, 1, h as i64, w as i64]).to_kind(Kind::Float).to_device(images.device());
        let mixed = blend(images, &images.index_select(0, &perm), &mask);
        MixedBatch { images: mixed, targets: mix_targets(labels, &perm, kept), mask: Some(mask), pairing: Some(perm) }
    }
}
