//! RandAugment: `num_ops` operations drawn uniformly with replacement from a policy's list, each
//! applied with probability `prob` at a magnitude drawn from N(`magnitude`, `magnitude_std`)
//! clipped to [0, `magnitude_max`], signed ops negated half the time. Two policies: timm's
//! increasing set (`rand-m9-mstd0.5-inc1`, the reference's ImageNet transformer recipe) and the
//! reference's 14-op "FixMatch" set (its CIFAR-100-at-224 recipe), both on Pillow's pixel
//! operations ([`super::pil_ops`]). Draws from the caller's RNG (samix's per-image streams), so the
//! choices follow the same distributions as timm's and the reference's but not their random
//! streams. Its config lives here.
use super::dataset::RawImage;
use super::pil_ops as ops;
use crate::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// Which operations RandAugment picks from, and how a magnitude becomes each one's argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RandAugmentPolicy {
    /// timm's `_RAND_INCREASING_TRANSFORMS` (15 ops; stronger as the magnitude grows).
    #[default]
    TimmIncreasing,
    /// The reference's (OpenMixup's) FixMatch list (14 ops, with Identity; no Invert, no
    /// SolarizeAdd; translation up to 0.3), here on Pillow's operations where the reference uses
    /// mmcv/OpenCV's (docs/REFERENCE_224.md lists the differences).
    Fixmatch,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandAugmentConfig {
    pub policy: RandAugmentPolicy,
    /// Operations per image (timm and the reference: 2).
    pub num_ops: usize,
    /// The magnitude on a 0–`magnitude_max` scale (timm's ImageNet DeiT recipe: 9; the
    /// reference's CIFAR-224: 7).
    pub magnitude: f64,
    /// Standard deviation of each operation's magnitude around `magnitude` (0: fixed).
    pub magnitude_std: f64,
    pub magnitude_max: f64,
    /// Probability that each drawn operation is applied.
    pub prob: f64,
    /// Colour of the pixels a geometric operation uncovers (timm: round(255·ImageNet mean) =
    /// [124, 116, 104]; the reference's CIFAR-224: [114, 123, 125]).
    pub fill: [u8; 3],
}

impl Default for RandAugmentConfig {
    fn default() -> Self {
        RandAugmentConfig {
            policy: RandAugmentPolicy::TimmIncreasing,
            num_ops: 2,
            magnitude: 9.0,
            magnitude_std: 0.5,
            magnitude_max: 10.0,
            prob: 0.5,
            fill: [124, 116, 104],
        }
    }
}

impl RandAugmentConfig {
    /// Refuses values outside their ranges, naming the key under `data.augment.randaugment`.
    pub fn check(&self) -> Result<()> {
        let key = |k: &str| format!("data.augment.randaugment.{k}");
        if !(1..=16).contains(&self.num_ops) {
            return Err(Error::config(key("num_ops"), "must be 1 to 16"));
        }
        if !(self.magnitude_max.is_finite() && self.magnitude_max > 0.0) {
            return Err(Error::config(key("magnitude_max"), "must be a positive number"));
        }
        if !(0.0..=self.magnitude_max).contains(&self.magnitude) {
            return Err(Error::config(key("magnitude"), "must be in [0, magnitude_max]"));
        }
        if !(self.magnitude_std.is_finite() && self.magnitude_std >= 0.0) {
            return Err(Error::config(key("magnitude_std"), "must be >= 0"));
        }
        if !(0.0..=1.0).contains(&self.prob) {
            return Err(Error::config(key("prob"), "must be a probability in [0, 1]"));
        }
        Ok(())
    }
}

/// One operation with its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Identity,
    AutoContrast,
    Equalize,
    Invert,
    /// Degrees, counter-clockwise.
    Rotate(f64),
    Posterize(u32),
    Solarize(u32),
    SolarizeAdd(u32),
    Color(f64),
    Contrast(f64),
    Brightness(f64),
    Sharpness(f64),
    /// Shear factors: output (x, y) reads input (x + f·y, y), resp. (x, y + f·x).
    ShearX(f64),
    ShearY(f64),
    /// Fractions of the width (height): output x reads input x + f·width.
    TranslateX(f64),
    TranslateY(f64),
}

impl Op {
    pub fn apply(self, img: &RawImage, fill: &[u8]) -> RawImage {
        let (w, h) = (img.width as f64, img.height as f64);
        match self {
            Op::Identity => img.clone(),
            Op::AutoContrast => ops::autocontrast(img),
            Op::Equalize => ops::equalize(img),
            Op::Invert => ops::invert(img),
            Op::Rotate(deg) => ops::rotate(img, deg, fill),
            Op::Posterize(bits) => ops::posterize(img, bits),
            Op::Solarize(t) => ops::solarize(img, t),
            Op::SolarizeAdd(add) => ops::solarize_add(img, add),
            Op::Color(f) => ops::color(img, f),
            Op::Contrast(f) => ops::contrast(img, f),
            Op::Brightness(f) => ops::brightness(img, f),
            Op::Sharpness(f) => ops::sharpness(img, f),
            Op::ShearX(f) => ops::affine_bicubic(img, [1.0, f, 0.0, 0.0, 1.0, 0.0], fill),
            Op::ShearY(f) => ops::affine_bicubic(img, [1.0, 0.0, 0.0, f, 1.0, 0.0], fill),
            Op::TranslateX(f) => ops::affine_bicubic(img, [1.0, 0.0, f * w, 0.0, 1.0, 0.0], fill),
            Op::TranslateY(f) => ops::affine_bicubic(img, [1.0, 0.0, 0.0, 0.0, 1.0, f * h], fill),
        }
    }
}

/// The operations of a policy, in its list's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Identity,
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
}

const TIMM_INCREASING: [Kind; 15] = [
    Kind::AutoContrast,
    Kind::Equalize,
    Kind::Invert,
    Kind::Rotate,
    Kind::Posterize,
    Kind::Solarize,
    Kind::SolarizeAdd,
    Kind::Color,
    Kind::Contrast,
    Kind::Brightness,
    Kind::Sharpness,
    Kind::ShearX,
    Kind::ShearY,
    Kind::TranslateX,
    Kind::TranslateY,
];

const FIXMATCH: [Kind; 14] = [
    Kind::AutoContrast,
    Kind::Brightness,
    Kind::Color,
    Kind::Contrast,
    Kind::Equalize,
    Kind::Identity,
    Kind::Posterize,
    Kind::Rotate,
    Kind::Sharpness,
    Kind::ShearX,
    Kind::ShearY,
    Kind::Solarize,
    Kind::TranslateX,
    Kind::TranslateY,
];

impl RandAugmentPolicy {
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            RandAugmentPolicy::TimmIncreasing => &TIMM_INCREASING,
            RandAugmentPolicy::Fixmatch => &FIXMATCH,
        }
    }

    /// The operation `kind` at magnitude `m` (0–10 scale: `m / max` is the level), with `negate`
    /// for the signed ones. timm: `timm/data/auto_augment.py`'s `*_level_to_arg`; FixMatch:
    /// the reference's `value = m/10 · (v2 − v1) + v1` ranges.
    pub fn op(self, kind: Kind, level: f64, negate: bool) -> Op {
        let sign = |v: f64| if negate { -v } else { v };
        let timm = self == RandAugmentPolicy::TimmIncreasing;
        // timm's enhancements: 1 ± 0.9·level, at least 0.1; the reference's: 1 ± (0.05 + 0.9·level).
        let enhance =
            |level: f64| if timm { (1.0 + sign(level * 0.9)).max(0.1) } else { 1.0 + sign(0.05 + 0.9 * level) };
        match kind {
            Kind::Identity => Op::Identity,
            Kind::AutoContrast => Op::AutoContrast,
            Kind::Equalize => Op::Equalize,
            Kind::Invert => Op::Invert,
            Kind::Rotate => Op::Rotate(sign(level * 30.0)),
            Kind::Posterize if timm => Op::Posterize(4 - (level * 4.0) as u32),
            Kind::Posterize => Op::Posterize((4.0 + level * 4.0) as u32),
            Kind::Solarize if timm => Op::Solarize(256 - ((level * 256.0) as u32).min(256)),
            // The reference thresholds at 256 − 256·level as a float: v < t ⇔ v < ⌈t⌉.
            Kind::Solarize => Op::Solarize((256.0 - 256.0 * level).ceil() as u32),
            Kind::SolarizeAdd => Op::SolarizeAdd(((level * 110.0) as u32).min(128)),
            Kind::Color => Op::Color(enhance(level)),
            Kind::Contrast => Op::Contrast(enhance(level)),
            Kind::Brightness => Op::Brightness(enhance(level)),
            Kind::Sharpness => Op::Sharpness(enhance(level)),
            Kind::ShearX => Op::ShearX(sign(level * 0.3)),
            Kind::ShearY => Op::ShearY(sign(level * 0.3)),
            Kind::TranslateX => Op::TranslateX(sign(level * if timm { 0.45 } else { 0.3 })),
            Kind::TranslateY => Op::TranslateY(sign(level * if timm { 0.45 } else { 0.3 })),
        }
    }
}

/// Draws the operations for one image: for each of `num_ops` picks, the kind, whether it runs,
/// its magnitude and its sign (in that order), then applies the ones that run in order.
pub fn rand_augment<R: Rng>(img: RawImage, cfg: &RandAugmentConfig, rng: &mut R) -> RawImage {
    draw_ops(cfg, rng).iter().fold(img, |img, op| op.apply(&img, &cfg.fill))
}

/// The operations RandAugment applies to one image (skipped ones left out).
pub fn draw_ops<R: Rng>(cfg: &RandAugmentConfig, rng: &mut R) -> Vec<Op> {
    let kinds = cfg.policy.kinds();
    let spread = Normal::new(cfg.magnitude, cfg.magnitude_std.max(0.0)).ok();
    let mut out = Vec::with_capacity(cfg.num_ops);
    for _ in 0..cfg.num_ops {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        if !rng.gen_bool(cfg.prob) {
            continue;
        }
        let m = match spread {
            Some(n) if cfg.magnitude_std > 0.0 => n.sample(rng),
            _ => cfg.magnitude,
        };
        let level = m.clamp(0.0, cfg.magnitude_max) / 10.0;
        let negate = rng.gen_bool(0.5);
        out.push(cfg.policy.op(kind, level, negate));
    }
    out
}
