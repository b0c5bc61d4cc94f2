//! CutMix (Yun et al. 2019): a box of side ratio √(1−λ) at a uniform centre, clipped to the
//! image, is pasted from the paired image; the label λ is recomputed from the pasted area.
use super::{mix_targets, random_pairing, LambdaSampler, MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct CutMix {
    lambda: LambdaSampler,
}

impl CutMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(CutMix { lambda: LambdaSampler::new(alpha)? })
    }
}

/// Rows `[y0, y1)` and columns `[x0, x1)` of the pasted region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutBox {
    pub y0: i64,
    pub y1: i64,
    pub x0: i64,
    pub x1: i64,
}

impl CutBox {
    pub fn area(&self) -> i64 {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
    /// Fraction of the image that keeps the first image: the label weight of y_a.
    pub fn keep_fraction(&self, h: i64, w: i64) -> f64 {
        1.0 - self.area() as f64 / (h * w) as f64
    }
}

/// The reference's box: cut = ⌊side·√(1−λ)⌋, centre uniform in the image, clipped at the borders.
pub fn cutmix_box(h: i64, w: i64, lam: f64, rng: &mut SamixRng) -> CutBox {
    let ratio = (1.0 - lam).max(0.0).sqrt();
    let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
    let (cy, cx) = (rng.gen_range(0..h), rng.gen_range(0..w));
    CutBox {
        y0: (cy - cut_h / 2).clamp(0, h),
        y1: (cy + cut_h / 2).clamp(0, h),
        x0: (cx - cut_w / 2).clamp(0, w),
        x1: (cx + cut_w / 2).clamp(0, w),
    }
}

/// Copy of `x` with the box region taken from `x2`.
pub fn paste_box(x: &Tensor, x2: &Tensor, b: CutBox) -> Tensor {
    let out = x.copy();
    if b.area() > 0 {
        let region = |t: &Tensor| t.narrow(2, b.y0, b.y1 - b.y0).narrow(3, b.x0, b.x1 - b.x0);
        region(&out).copy_(&region(x2));
    }
    out
}

impl MixPolicy for CutMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2], size[3]);
        let perm = random_pairing(n, rng, images.device());
        let lam = self.lambda.sample(rng);
        let b = cutmix_box(h, w, lam, rng);
        let mixed = paste_box(images, &images.index_select(0, &perm), b);
        MixedBatch { images: mixed, targets: mix_targets(labels, &perm, b.keep_fraction(h, w)) }
    }
}
