//! MixUp (Zhang et al. 2018): x̃ = λx + (1−λ)x[perm], λ ~ Beta(α, α) per batch or per sample.
use super::{
    mix_targets, mix_targets_t, random_pairing, random_pairing_on_device, LambdaSampler, MixPolicy, MixedBatch,
    MixedTargets,
};
use crate::rng::SamixRng;
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `policy = "mixup"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixupConfig {
    pub alpha: f64,
    /// One λ per sample instead of one per batch.
    #[serde(default)]
    pub per_sample: bool,
}

impl super::PolicyConfig for MixupConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(MixUp::new(self.alpha, self.per_sample)?))
    }
}

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
    // x2 + λ·(x − x2): one fused kernel (lerp wants λ in the images' kind).
    x2.lerp_tensor(x, &lam.to_kind(x.kind()))
}

impl MixPolicy for MixUp {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let n = images.size()[0] as usize;
        let perm = random_pairing(n, rng, images.device());
        let partner = images.index_select(0, &perm);
        if self.per_sample {
            let lams: Vec<f32> = (0..n).map(|_| self.lambda.sample(rng) as f32).collect();
            let lam = crate::device::upload(&Tensor::from_slice(&lams), images.device());
            let images = mix_images(images, &partner, &lam);
            let targets = MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam };
            MixedBatch { images, targets, first_weight: None, pairing: Some(perm) }
        } else {
            let lam = self.lambda.sample(rng);
            let images = partner.lerp(images, lam);
            MixedBatch { images, targets: mix_targets(labels, &perm, lam), first_weight: None, pairing: Some(perm) }
        }
    }

    fn mix_on_device(&self, images: &Tensor, labels: &Tensor) -> Option<MixedBatch> {
        let (n, device) = (images.size()[0], images.device());
        let perm = random_pairing_on_device(n as usize, device);
        let partner = images.index_select(0, &perm);
        let shape: &[i64] = if self.per_sample { &[n] } else { &[] };
        let lam = self.lambda.sample_on_device(shape, device);
        let mixed = mix_images(images, &partner, &lam);
        let targets = if self.per_sample {
            MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam }
        } else {
            mix_targets_t(labels, &perm, &lam)
        };
        Some(MixedBatch { images: mixed, targets, first_weight: None, pairing: Some(perm) })
    }
}
