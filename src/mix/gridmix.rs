//! GridMix (Baek et al. 2021), as the reference's CIFAR setting (docs/ALGORITHM.md §8): a crop region
//! of random area (50–100%) and aspect ratio (½–2) is tiled into `n_holes × ny` square patches; in
//! each patch a hole of side ratio √(1−λ) at the patch's top-left corner takes the paired image.
//! λ for the labels is the area the first image keeps. The mask's rectangles are laid out on the
//! host (a few dozen) and uploaded once; the blend runs on the batch's device.
use super::{blend, mix_targets, random_pairing, LambdaSampler, MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `policy = "gridmix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GridmixConfig {
    pub alpha: f64,
    /// The reference's crop: unclamped, at a possibly negative offset, holes written with
    /// Python's slicing (see [`reference_grid_mask`]).
    #[serde(default)]
    pub reference: bool,
}

impl super::PolicyConfig for GridmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(GridMix::new(self.alpha)?.reference(self.reference)))
    }
}

#[derive(Clone, Debug)]
pub struct GridMix {
    lambda: LambdaSampler,
    reference: bool,
}

impl GridMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(GridMix { lambda: LambdaSampler::new(alpha)?, reference: false })
    }

    /// Lays the grid out as the reference does ([`reference_grid_mask`]): the crop's size is not
    /// clamped to the image, so a tall or wide crop starts at a negative offset, and the holes
    /// are written with Python's slicing rules.
    pub fn reference(mut self, on: bool) -> Self {
        self.reference = on;
        self
    }
}

/// The reference's grid draw: crop area fraction, crop aspect ratio, holes across, and the crop's
/// relative position (`cx`, `cy` in [0, 1)).
#[derive(Clone, Copy, Debug)]
pub struct ReferenceGrid {
    pub n_holes: usize,
    pub cut_area_ratio: f64,
    pub cut_aspect_ratio: f64,
    pub cx: f64,
    pub cy: f64,
}

/// Python's `a[start:stop]` on a sequence of length `n`, as a range of indices: negative ends
/// count from the end (then clamp at 0), ends past `n` clamp to `n`, an empty range when the
/// start is not before the stop.
fn python_slice(start: i64, stop: i64, n: usize) -> std::ops::Range<usize> {
    let n = n as i64;
    let norm = |i: i64| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let (a, b) = (norm(start), norm(stop));
    if a < b {
        a as usize..b as usize
    } else {
        0..0
    }
}

/// The mask (the partner image's weight) of the reference's GridMix (`h·w`, row-major, 1 = partner) for hole
/// side ratio `ratio`: crop `w = ⌊√(⌊area⌋/ar)⌋`, `h = ⌊w·ar⌋` unclamped, its top-left at
/// `⌊(H − h)·cy⌋` (truncated toward zero, so negative when the crop is taller than the image),
/// square patches of side `⌈w/n_holes⌉`, holes written as `mask[top+y1 : top+y2, …] = 1`
/// with Python's slicing — a hole wholly above the image wraps to its bottom rows, one that
/// straddles the top edge vanishes. `n_holes` is capped at half the crop width (the reference
/// asserts it).
pub fn reference_grid_mask(h: usize, w: usize, ratio: f64, g: ReferenceGrid) -> Vec<f32> {
    let cut_area = ((h * w) as f64 * g.cut_area_ratio) as i64;
    let cut_w = ((cut_area as f64 / g.cut_aspect_ratio).sqrt() as i64).max(1);
    let cut_h = ((cut_w as f64 * g.cut_aspect_ratio) as i64).max(1);
    let xc1 = ((w as i64 - cut_w) as f64 * g.cx) as i64;
    let yc1 = ((h as i64 - cut_h) as f64 * g.cy) as i64;
    let n_holes = (g.n_holes as i64).clamp(1, (cut_w / 2).max(1));
    let patch_w = (cut_w + n_holes - 1) / n_holes;
    let patch_h = patch_w.max(1);
    let ny = (cut_h + patch_h - 1) / patch_h;
    let hole = |patch: i64| ((patch as f64 * ratio) as i64).max(1).min(patch - 1);
    let (hole_w, hole_h) = (hole(patch_w), hole(patch_h));
    let mut mask = vec![0f32; h * w];
    for i in 0..=n_holes {
        for j in 0..=ny {
            let x1 = (patch_w * i).min(cut_w);
            let y1 = (patch_h * j).min(cut_h);
            let (x2, y2) = ((x1 + hole_w).min(cut_w), (y1 + hole_h).min(cut_h));
            for y in python_slice(yc1 + y1, yc1 + y2, h) {
                for x in python_slice(xc1 + x1, xc1 + x2, w) {
                    mask[y * w + x] = 1.0;
                }
            }
        }
    }
    mask
}

/// The mask (the partner image's weight, `h·w` values, row-major, 1 = partner) for hole side ratio `ratio`.
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
        let ratio = (1.0 - lam).max(0.0).sqrt();
        let partner = if self.reference {
            let g = ReferenceGrid {
                n_holes: rng.gen_range(2..=6usize),
                cut_area_ratio: rng.gen_range(0.5..=1.0),
                cut_aspect_ratio: rng.gen_range(0.5..=2.0),
                cx: rng.gen::<f64>(),
                cy: rng.gen::<f64>(),
            };
            reference_grid_mask(h, w, ratio, g)
        } else {
            grid_mask(h, w, ratio, rng)
        };
        let kept = 1.0 - partner.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64;
        let first: Vec<f32> = partner.iter().map(|v| 1.0 - v).collect();
        let first_weight =
            Tensor::from_slice(&first).view([1, 1, h as i64, w as i64]).to_kind(Kind::Float).to_device(images.device());
        let mixed = blend(images, &images.index_select(0, &perm), &first_weight);
        MixedBatch {
            images: mixed,
            targets: mix_targets(labels, &perm, kept),
            first_weight: Some(first_weight),
            pairing: Some(perm),
        }
    }
}
