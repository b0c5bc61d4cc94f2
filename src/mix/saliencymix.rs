//! SaliencyMix (Uddin et al. 2021): a CutMix box (side ratio √(1−λ)) centred on the saliency peak
//! of one source image (the first paired image), the same box for the whole batch; λ = the area
//! the first image keeps. The reference uses OpenCV's StaticSaliencyFineGrained; samix computes
//! the spectral-residual static saliency (Hou & Zhang, CVPR 2007) on the device instead: log
//! amplitude spectrum minus its 3×3 local mean, back-transformed with the original phase,
//! squared magnitude, Gaussian-smoothed (σ = side/16). Reading the peak's position costs one
//! host sync per batch.
use super::{
    box_first_weight, centered_box, mix_targets, paste_box, random_pairing, LambdaSampler, MixPolicy, MixedBatch,
};
use crate::rng::SamixRng;
use crate::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `policy = "saliencymix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaliencymixConfig {
    pub alpha: f64,
}

impl super::PolicyConfig for SaliencymixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(SaliencyMix::new(self.alpha)?))
    }
}

#[derive(Clone, Debug)]
pub struct SaliencyMix {
    lambda: LambdaSampler,
}

impl SaliencyMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(SaliencyMix { lambda: LambdaSampler::new(alpha)? })
    }
}

fn gaussian_kernel(sigma: f64, device: tch::Device) -> Tensor {
    let radius = (2.0 * sigma).ceil() as i64;
    let xs = Tensor::arange_start(-radius, radius + 1, (Kind::Float, device));
    let k = (xs.square() / (-2.0 * sigma * sigma)).exp();
    &k / k.sum(Kind::Float)
}

/// Spectral-residual saliency of one image (`C×H×W`), as an `H×W` map.
pub fn spectral_residual_saliency(image: &Tensor) -> Tensor {
    let grey = image.mean_dim(0, false, Kind::Float);
    let (h, w) = (grey.size()[0], grey.size()[1]);
    let spectrum = grey.fft_fft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward");
    let log_amp = (spectrum.abs() + 1e-8).log();
    let local_mean =
        log_amp.view([1, 1, h, w]).avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None::<i64>).view([h, w]);
    let residual = Tensor::polar(&(log_amp - local_mean).exp(), &spectrum.angle());
    let saliency = residual.fft_ifft2(None::<&[i64]>, [-2i64, -1].as_slice(), "backward").abs().square();
    let k = gaussian_kernel(h.max(w) as f64 / 16.0, image.device());
    let r = (k.size()[0] - 1) / 2;
    let s = saliency.view([1, 1, h, w]);
    let s = s.conv2d(&k.view([1, 1, -1, 1]), None::<&Tensor>, [1, 1], [r, 0], [1, 1], 1);
    s.conv2d(&k.view([1, 1, 1, -1]), None::<&Tensor>, [1, 1], [0, r], [1, 1], 1).view([h, w])
}

impl MixPolicy for SaliencyMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2], size[3]);
        let perm = random_pairing(n, rng, images.device());
        let lam = self.lambda.sample(rng);
        let partner = images.index_select(0, &perm);
        let peak = tch::no_grad(|| {
            spectral_residual_saliency(&partner.get(0)).flatten(0, -1).argmax(0, false).int64_value(&[])
        });
        let ratio = (1.0 - lam).max(0.0).sqrt();
        let b = centered_box(h, w, (h as f64 * ratio) as i64, (w as f64 * ratio) as i64, peak / w, peak % w);
        let mixed = paste_box(images, &partner, b);
        let first_weight = Some(box_first_weight(h, w, b, images.device()));
        MixedBatch {
            images: mixed,
            targets: mix_targets(labels, &perm, b.keep_fraction(h, w)),
            first_weight,
            pairing: Some(perm),
        }
    }
}
