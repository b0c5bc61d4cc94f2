//! timm's Mixup/CutMix combination: with probability `prob` a unit (the batch, a pair, or one
//! element, by `mode`) is mixed; then CutMix with probability `switch_prob` (when both are
//! enabled), else MixUp, each with its own Beta(α, α). As in timm, sample i is paired with sample
//! N−1−i (the flipped batch); in `pair` mode both members of a pair share λ and box; CutMix's λ is
//! corrected to the kept area. Per-pair/element masks are laid out on the host and uploaded once.
//! Label smoothing is `train.label_smoothing`, applied to both labels (the same as timm's smoothed
//! mixed targets, see `MixedTargets::to_dense`).
use super::{blend, box_first_weight, cutmix_box, paste_box, LambdaSampler, MixPolicy, MixedBatch, MixedTargets};
use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LambdaMode {
    #[default]
    Batch,
    Pair,
    Elem,
}

/// `policy = "mixup_cutmix"` (timm's defaults).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixupCutmixConfig {
    #[serde(default = "MixupCutmixConfig::default_mixup_alpha")]
    pub mixup_alpha: f64,
    #[serde(default = "MixupCutmixConfig::one")]
    pub cutmix_alpha: f64,
    #[serde(default = "MixupCutmixConfig::one")]
    pub prob: f64,
    #[serde(default = "MixupCutmixConfig::default_switch_prob")]
    pub switch_prob: f64,
    #[serde(default)]
    pub mode: LambdaMode,
}

impl MixupCutmixConfig {
    fn default_mixup_alpha() -> f64 {
        0.8
    }
    fn one() -> f64 {
        1.0
    }
    fn default_switch_prob() -> f64 {
        0.5
    }
    fn build(&self) -> Result<MixupCutmix> {
        MixupCutmix::new(self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob, self.mode)
    }
}

impl super::PolicyConfig for MixupCutmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        self.build().map(|_| ())
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(self.build()?))
    }
}

#[derive(Clone, Debug)]
pub struct MixupCutmix {
    mixup: Option<LambdaSampler>,
    cutmix: Option<LambdaSampler>,
    prob: f64,
    switch_prob: f64,
    mode: LambdaMode,
}

/// What one unit (batch, pair or element) does.
#[derive(Clone, Copy, Debug)]
enum Draw {
    Keep,
    Blend(f64),
    Cut(f64),
}

impl MixupCutmix {
    pub fn new(mixup_alpha: f64, cutmix_alpha: f64, prob: f64, switch_prob: f64, mode: LambdaMode) -> Result<Self> {
        let sampler = |a: f64, key: &str| -> Result<Option<LambdaSampler>> {
            if a == 0.0 {
                Ok(None)
            } else {
                LambdaSampler::new(a)
                    .map(Some)
                    .map_err(|_| Error::config(key, format!("{a} must be 0 (off) or positive")))
            }
        };
        let (mixup, cutmix) = (sampler(mixup_alpha, "mix.mixup_alpha")?, sampler(cutmix_alpha, "mix.cutmix_alpha")?);
        if mixup.is_none() && cutmix.is_none() {
            return Err(Error::config("mix.mixup_alpha", "one of mixup_alpha and cutmix_alpha must be positive"));
        }
        for (v, key) in [(prob, "mix.prob"), (switch_prob, "mix.switch_prob")] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(key, format!("{v} is not a probability")));
            }
        }
        Ok(MixupCutmix { mixup, cutmix, prob, switch_prob, mode })
    }

    fn draw(&self, rng: &mut SamixRng) -> Draw {
        if rng.gen::<f64>() >= self.prob {
            return Draw::Keep;
        }
        match (&self.mixup, &self.cutmix) {
            (Some(m), Some(c)) => {
                if rng.gen::<f64>() < self.switch_prob {
                    Draw::Cut(c.sample(rng))
                } else {
                    Draw::Blend(m.sample(rng))
                }
            }
            (Some(m), None) => Draw::Blend(m.sample(rng)),
            (None, Some(c)) => Draw::Cut(c.sample(rng)),
            (None, None) => Draw::Keep,
        }
    }
}

impl MixPolicy for MixupCutmix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let device = images.device();
        let pairing = Tensor::arange(n, (Kind::Int64, device)).flip([0]);
        let partner = images.flip([0]);
        let (mixed, lam, first_weight) = if self.mode == LambdaMode::Batch {
            let (mixed, l, first_weight) = match self.draw(rng) {
                Draw::Keep => (images.shallow_clone(), 1.0, None),
                Draw::Blend(l) => (images * l + &partner * (1.0 - l), l, None),
                Draw::Cut(l) => {
                    let b = cutmix_box(h, w, l, rng);
                    (paste_box(images, &partner, b), b.keep_fraction(h, w), Some(box_first_weight(h, w, b, device)))
                }
            };
            (mixed, vec![l as f32; n as usize], first_weight)
        } else {
            // One draw per element, or per pair (element i and its partner N−1−i share it).
            let units = if self.mode == LambdaMode::Pair { (n as usize).div_ceil(2) } else { n as usize };
            let draws: Vec<(Draw, Option<super::CutBox>)> = (0..units)
                .map(|_| match self.draw(rng) {
                    Draw::Cut(l) => (Draw::Cut(l), Some(cutmix_box(h, w, l, rng))),
                    d => (d, None),
                })
                .collect();
            let plane = (h * w) as usize;
            let mut weights = vec![1f32; n as usize * plane];
            let mut lams = vec![1f32; n as usize];
            for i in 0..n as usize {
                let unit = if self.mode == LambdaMode::Pair { i.min(n as usize - 1 - i) } else { i };
                let cell = &mut weights[i * plane..(i + 1) * plane];
                match draws[unit] {
                    (Draw::Keep, _) => {}
                    (Draw::Blend(l), _) => {
                        cell.iter_mut().for_each(|v| *v = l as f32);
                        lams[i] = l as f32;
                    }
                    (Draw::Cut(_), Some(b)) => {
                        for y in b.y0..b.y1 {
                            for x in b.x0..b.x1 {
                                cell[(y * w + x) as usize] = 0.0;
                            }
                        }
                        lams[i] = b.keep_fraction(h, w) as f32;
                    }
                    (Draw::Cut(_), None) => {}
                }
            }
            let first_weight = Tensor::from_slice(&weights).view([n, 1, h, w]).to_device(device);
            (blend(images, &partner, &first_weight), lams, Some(first_weight))
        };
        let targets = MixedTargets {
            y_a: labels.shallow_clone(),
            y_b: labels.flip([0]),
            lam: Tensor::from_slice(&lam).to_device(device),
        };
        MixedBatch { images: mixed, targets, first_weight, pairing: Some(pairing) }
    }
}
