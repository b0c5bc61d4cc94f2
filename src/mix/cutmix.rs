//! CutMix (Yun et al. 2019): a box of side ratio √(1−λ) at a uniform centre, clipped to the
//! image, is pasted from the paired image; the label λ is recomputed from the pasted area.
use super::{
    mix_targets, mix_targets_t, random_pairing, random_pairing_on_device, random_pairing_without_self, LambdaSampler,
    MixPolicy, MixedBatch, NO_REPEAT_REDRAWS,
};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// `policy = "cutmix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CutmixConfig {
    pub alpha: f64,
    /// Redraw a pairing that pairs an image with itself (up to 10 times), as the reference.
    #[serde(default)]
    pub no_repeat: bool,
}

impl super::PolicyConfig for CutmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(CutMix::new(self.alpha)?.no_repeat(self.no_repeat)))
    }
}

#[derive(Clone, Debug)]
pub struct CutMix {
    lambda: LambdaSampler,
    no_repeat: bool,
}

impl CutMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(CutMix { lambda: LambdaSampler::new(alpha)?, no_repeat: false })
    }

    /// Redraw pairings that pair an image with itself (the reference's `no_repeat`; host-drawn
    /// pairings only).
    pub fn no_repeat(mut self, on: bool) -> Self {
        self.no_repeat = on;
        self
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
    random_box(h, w, (1.0 - lam).max(0.0).sqrt(), rng)
}

/// A box of sides ⌊side·ratio⌋ at a uniformly random centre, clipped at the borders.
pub fn random_box(h: i64, w: i64, ratio: f64, rng: &mut SamixRng) -> CutBox {
    let (cut_h, cut_w) = ((h as f64 * ratio) as i64, (w as f64 * ratio) as i64);
    let (cy, cx) = (rng.gen_range(0..h), rng.gen_range(0..w));
    centered_box(h, w, cut_h, cut_w, cy, cx)
}

/// The box of sides `cut_h × cut_w` centred at `(cy, cx)`, clipped at the borders.
pub fn centered_box(h: i64, w: i64, cut_h: i64, cut_w: i64, cy: i64, cx: i64) -> CutBox {
    CutBox {
        y0: (cy - cut_h / 2).clamp(0, h),
        y1: (cy + cut_h / 2).clamp(0, h),
        x0: (cx - cut_w / 2).clamp(0, w),
        x1: (cx + cut_w / 2).clamp(0, w),
    }
}

/// Per-pixel weight of the first image (`1×1×H×W`): 0 inside the box, 1 elsewhere.
pub fn box_first_weight(h: i64, w: i64, b: CutBox, device: tch::Device) -> Tensor {
    let m = Tensor::ones([1, 1, h, w], (tch::Kind::Float, device));
    if b.area() > 0 {
        let _ = m.narrow(2, b.y0, b.y1 - b.y0).narrow(3, b.x0, b.x1 - b.x0).fill_(0.0);
    }
    m
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

/// The partner's weight map (`1×1×h×w`, 1 inside the box) and the first image's kept fraction
/// (0-dim) of a CutMix box drawn entirely on `device`: λ ~ Beta(α, α) on the device, then the
/// same box rule as [`cutmix_box`] (side `⌊h·√(1−λ)⌋`, centre uniform over the pixels, clipped)
/// evaluated with tensor arithmetic instead of host integers.
pub fn cutmix_box_on_device(h: i64, w: i64, lambda: &LambdaSampler, device: Device) -> (Tensor, Tensor) {
    let lam = lambda.sample_on_device(&[], device);
    let ratio = (-lam + 1.0).clamp_min(0.0).sqrt();
    let float = (Kind::Float, device);
    let span = |size: i64| {
        let half = (&ratio * size as f64).floor().divide_scalar_mode(2, "floor");
        let centre = Tensor::randint(size, [], (Kind::Int64, device)).to_kind(Kind::Float);
        let lo = (&centre - &half).clamp(0.0, size as f64);
        let hi = (&centre + &half).clamp(0.0, size as f64);
        let coords = Tensor::arange(size, float);
        let inside = coords.ge_tensor(&lo).logical_and(&coords.lt_tensor(&hi)).to_kind(Kind::Float);
        (inside, hi - lo)
    };
    let (rows, height) = span(h);
    let (cols, width) = span(w);
    let box_weight = rows.view([1, 1, h, 1]) * cols.view([1, 1, 1, w]);
    let kept: Tensor = 1.0 - height * width / (h * w) as f64;
    (box_weight, kept)
}

impl MixPolicy for CutMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2], size[3]);
        let perm = if self.no_repeat {
            random_pairing_without_self(n, NO_REPEAT_REDRAWS, rng, images.device())
        } else {
            random_pairing(n, rng, images.device())
        };
        let lam = self.lambda.sample(rng);
        let b = cutmix_box(h, w, lam, rng);
        let mixed = paste_box(images, &images.index_select(0, &perm), b);
        let first_weight = Some(box_first_weight(h, w, b, images.device()));
        MixedBatch {
            images: mixed,
            targets: mix_targets(labels, &perm, b.keep_fraction(h, w)),
            first_weight,
            pairing: Some(perm),
        }
    }

    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        let size = images.size();
        let (n, h, w, device) = (size[0] as usize, size[2], size[3], images.device());
        let perm = random_pairing_on_device(n, device);
        let (box_weight, kept) = cutmix_box_on_device(h, w, &self.lambda, device);
        let mixed = images * (1.0 - &box_weight) + images.index_select(0, &perm) * &box_weight;
        let first_weight = Some(1.0 - box_weight);
        Some(MixedBatch {
            images: mixed,
            targets: mix_targets_t(labels, &perm, &kept),
            first_weight,
            pairing: Some(perm),
        })
    }
}
