//! Random erasing: with probability `p`, one rectangle of a random area fraction and log-uniform
//! aspect ratio is filled with per-pixel Gaussian noise (timm's `mode='pixel'`, the reference's
//! `RandomErasing_numpy` `'rand'`), in pixel units on the byte image: the noise's mean and
//! standard deviation per channel default to the dataset's normalisation statistics ×255, which
//! is timm's N(0, 1) in normalised units, quantised and clipped to bytes. Its config lives here.
use super::dataset::RawImage;
use crate::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomErasingConfig {
    /// Probability of erasing a rectangle (timm's DeiT recipe and the reference: 0.25).
    pub p: f64,
    /// Range of the rectangle's area as a fraction of the image's.
    pub area: [f64; 2],
    /// Range of its aspect ratio (height / width), drawn log-uniformly.
    pub aspect: [f64; 2],
    /// Tries at a rectangle that fits inside the image (timm: 10; the reference's numpy
    /// version: 1, clamping the rectangle to the image instead).
    pub attempts: usize,
    /// Mean and standard deviation of the noise per channel, in pixel units (0–255); unset:
    /// the dataset's mean and std ×255 (timm's pixel mode).
    pub fill_mean: Option<[f64; 3]>,
    pub fill_std: Option<[f64; 3]>,
}

impl Default for RandomErasingConfig {
    fn default() -> Self {
        RandomErasingConfig {
            p: 0.25,
            area: [0.02, 1.0 / 3.0],
            aspect: [0.3, 1.0 / 0.3],
            attempts: 10,
            fill_mean: None,
            fill_std: None,
        }
    }
}

impl RandomErasingConfig {
    /// Refuses values outside their ranges, naming the key under `data.augment.random_erasing`.
    pub fn check(&self) -> Result<()> {
        let key = |k: &str| format!("data.augment.random_erasing.{k}");
        if !(0.0..=1.0).contains(&self.p) {
            return Err(Error::config(key("p"), "must be a probability in [0, 1]"));
        }
        if !(self.area[0] > 0.0 && self.area[0] <= self.area[1] && self.area[1] <= 1.0) {
            return Err(Error::config(key("area"), "must be [lo, hi] with 0 < lo <= hi <= 1"));
        }
        if !(self.aspect[0] > 0.0 && self.aspect[0] <= self.aspect[1] && self.aspect[1].is_finite()) {
            return Err(Error::config(key("aspect"), "must be [lo, hi] with 0 < lo <= hi"));
        }
        if !(1..=100).contains(&self.attempts) {
            return Err(Error::config(key("attempts"), "must be 1 to 100"));
        }
        let bad = |v: &Option<[f64; 3]>, lo: f64| v.is_some_and(|v| v.iter().any(|x| !(x.is_finite() && *x >= lo)));
        if bad(&self.fill_mean, 0.0) || bad(&self.fill_std, 0.0) {
            return Err(Error::config(
                key("fill_mean"),
                "fill_mean and fill_std must be finite and >= 0 (pixel units)",
            ));
        }
        Ok(())
    }
}

/// The rectangle (top, left, height, width) erased in an `h × w` image, or none: timm's draws
/// (a rectangle must fit strictly inside), or with one attempt the reference's (clamped).
pub fn draw_rectangle<R: Rng>(
    cfg: &RandomErasingConfig,
    h: usize,
    w: usize,
    rng: &mut R,
) -> Option<(usize, usize, usize, usize)> {
    if !rng.gen_bool(cfg.p) {
        return None;
    }
    let (lo, hi) = (cfg.aspect[0].ln(), cfg.aspect[1].ln());
    for _ in 0..cfg.attempts {
        let target = rng.gen_range(cfg.area[0]..=cfg.area[1]) * (h * w) as f64;
        let aspect = rng.gen_range(lo..=hi).exp();
        let (eh, ew) = ((target * aspect).sqrt().round() as usize, (target / aspect).sqrt().round() as usize);
        if cfg.attempts == 1 {
            let (eh, ew) = (eh.clamp(1, h), ew.clamp(1, w));
            return Some((rng.gen_range(0..=h - eh), rng.gen_range(0..=w - ew), eh, ew));
        }
        if eh > 0 && ew > 0 && eh < h && ew < w {
            return Some((rng.gen_range(0..=h - eh), rng.gen_range(0..=w - ew), eh, ew));
        }
    }
    None
}

/// Erases one rectangle of `img` as `cfg` says, with noise of `mean`/`std` (pixel units) per channel.
pub fn erase<R: Rng>(mut img: RawImage, cfg: &RandomErasingConfig, mean: &[f64], std: &[f64], rng: &mut R) -> RawImage {
    let Some((top, left, eh, ew)) = draw_rectangle(cfg, img.height, img.width, rng) else {
        return img;
    };
    let (h, w) = (img.height, img.width);
    for c in 0..img.channels {
        let (m, s) = (mean[c % mean.len().max(1)], std[c % std.len().max(1)]);
        for y in top..top + eh {
            for px in &mut img.data[(c * h + y) * w + left..(c * h + y) * w + left + ew] {
                let z: f64 = StandardNormal.sample(rng);
                *px = (m + s * z).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}
