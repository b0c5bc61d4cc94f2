//! FMix (Harris et al. 2020): a random low-frequency image — complex Gaussian noise on the rfft
//! grid of the image size, scaled by `1 / max(f, 1/max(H,W))^decay` (decay 3), inverse FFT — is
//! binarised by keeping its top ⌈λHW⌉ or ⌊λHW⌋ pixels (coin flip) for the first image. One mask per
//! batch; the label weight is the first image's exact area. The spectrum is drawn from the host RNG (so a
//! seed fixes it); the small FFT and the ranking run on the CPU, the blend on the batch's device.
use super::{
    blend, mix_targets, random_pairing, random_pairing_without_self, LambdaSampler, MixPolicy, MixedBatch,
    NO_REPEAT_REDRAWS,
};
use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// `policy = "fmix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FmixConfig {
    pub alpha: f64,
    #[serde(default = "FmixConfig::default_decay_power")]
    pub decay_power: f64,
    /// Redraw a pairing that pairs an image with itself (up to 10 times), as the reference.
    #[serde(default)]
    pub no_repeat: bool,
}

impl FmixConfig {
    fn default_decay_power() -> f64 {
        3.0
    }
}

impl super::PolicyConfig for FmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)?;
        FMix::new(self.alpha, self.decay_power).map(|_| ())
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(FMix::new(self.alpha, self.decay_power)?.no_repeat(self.no_repeat)))
    }
}

#[derive(Clone, Debug)]
pub struct FMix {
    lambda: LambdaSampler,
    decay_power: f64,
    no_repeat: bool,
}

impl FMix {
    pub fn new(alpha: f64, decay_power: f64) -> Result<Self> {
        if !(decay_power.is_finite() && decay_power > 0.0) {
            return Err(Error::config("mix.decay_power", format!("{decay_power} is not a positive number")));
        }
        Ok(FMix { lambda: LambdaSampler::new(alpha)?, decay_power, no_repeat: false })
    }

    /// Redraw pairings that pair an image with itself (the reference's `no_repeat`).
    pub fn no_repeat(mut self, on: bool) -> Self {
        self.no_repeat = on;
        self
    }
}

fn frequencies(n: i64, half: bool) -> Vec<f64> {
    let len = if half { n / 2 + 1 } else { n };
    (0..len).map(|i| if !half && i >= (n + 1) / 2 { (i - n) as f64 } else { i as f64 } / n as f64).collect()
}

/// A binary first-image weight map (`1×1×H×W`, on the CPU) keeping `keep` pixels.
pub fn fourier_first_weight(h: i64, w: i64, keep: i64, decay_power: f64, rng: &mut SamixRng) -> Tensor {
    let (fy, fx) = (frequencies(h, false), frequencies(w, true));
    let floor = 1.0 / h.max(w) as f64;
    let mut re = Vec::with_capacity(fy.len() * fx.len());
    let mut im = Vec::with_capacity(fy.len() * fx.len());
    for y in &fy {
        for x in &fx {
            let scale = 1.0 / (y * y + x * x).sqrt().max(floor).powf(decay_power);
            let (a, b): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            re.push((a * scale) as f32);
            im.push((b * scale) as f32);
        }
    }
    let shape = [fy.len() as i64, fx.len() as i64];
    let spectrum = Tensor::complex(&Tensor::from_slice(&re).view(shape), &Tensor::from_slice(&im).view(shape));
    let field = spectrum.fft_irfft2([h, w].as_slice(), [-2i64, -1].as_slice(), "backward").flatten(0, -1);
    let order = field.argsort(0, true);
    let mut first_weight = Tensor::zeros([h * w], (Kind::Float, Device::Cpu));
    let _ = first_weight.index_fill_(0, &order.narrow(0, 0, keep.clamp(0, h * w)), 1.0);
    first_weight.view([1, 1, h, w])
}

impl MixPolicy for FMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2], size[3]);
        let perm = if self.no_repeat {
            random_pairing_without_self(n, NO_REPEAT_REDRAWS, rng, images.device())
        } else {
            random_pairing(n, rng, images.device())
        };
        let lam = self.lambda.sample(rng);
        let exact = lam * (h * w) as f64;
        let keep = if rng.gen_bool(0.5) { exact.ceil() } else { exact.floor() } as i64;
        let first_weight = fourier_first_weight(h, w, keep, self.decay_power, rng).to_device(images.device());
        let mixed = blend(images, &images.index_select(0, &perm), &first_weight);
        MixedBatch {
            images: mixed,
            targets: mix_targets(labels, &perm, keep as f64 / (h * w) as f64),
            first_weight: Some(first_weight),
            pairing: Some(perm),
        }
    }
}
