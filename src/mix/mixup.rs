//! MixUp (Zhang et al. 2018): x̃ = λx + (1−λ)x[perm], λ ~ Beta(α, α) per batch or per sample.
use super::{mix_targets, random_pairing, LambdaSampler, MixPolicy, MixedBatch, MixedTargets};
use crate::rng::SamixRng;
use crate::Result;
use tch::Tensor;

#[derive(Clone, Debug)]
pub struct MixUp {
    lambda: LambdaSampler,
    per_sample: bool,
}

impl MixUp {
    pub fn new(alpha: f64, per_sample: bool) -> Result<Self> {
        Ok(MixUp { lambda: LambdaSampler::new(alpha)?, per_sample })
    }
}

/// λ-weighted blend; `lam` is a scalar tensor or one weight per sample (`[N]`).
pub fn mix_images(x: &Tensor, x2: &Tensor, lam: &Tensor) -> Tensor {
    let lam = if lam.dim() == 1 { lam.view([-1, 1, 1, 1]) } else { lam.shallow_clone() };
    x * &lam + x2 * (1.0 - &lam)
}

impl MixPolicy for MixUp {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let n = images.size()[0] as usize;
        let perm = random_pairing(n, rng, images.device());
        let partner = images.index_select(0, &perm);
        if self.per_sample {
            let lams: Vec<f32> = (0..n).map(|_| self.lambda.sample(rng) as f32).collect();
            let lam = Tensor::from_slice(&lams).to_device(images.device());
            let images = mix_images(images, &partner, &lam);
            let targets = MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam };
            MixedBatch { images, targets, mask: None, pairing: Some(perm) }
        } else {
            let lam = self.lambda.sample(rng);
            let images = images * lam + &partner * (1.0 - lam);
            MixedBatch { images, targets: mix_targets(labels, &perm, lam), mask: None, pairing: Some(perm) }
        }
    }
}
