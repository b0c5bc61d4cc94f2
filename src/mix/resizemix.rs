//! ResizeMix (Qin et al. 2020): the whole paired image, shrunk (nearest) to a box of side ratio
//! τ at a random centre (clipped), is pasted into the first; λ = 1 − box area. τ ~ Beta(α, α)
//! redrawn uniformly in [0.1, 0.8] when outside it (the reference's CIFAR setting, `use_alpha`).
use super::{box_first_weight, mix_targets, random_box, random_pairing, LambdaSampler, MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::Result;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `policy = "resizemix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResizemixConfig {
    pub alpha: f64,
}

impl super::PolicyConfig for ResizemixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn MixPolicy + Send>> {
        Ok(Box::new(ResizeMix::new(self.alpha)?))
    }
}

pub const SCALE: (f64, f64) = (0.1, 0.8);

#[derive(Clone, Debug)]
pub struct ResizeMix {
    lambda: LambdaSampler,
}

impl ResizeMix {
    pub fn new(alpha: f64) -> Result<Self> {
        Ok(ResizeMix { lambda: LambdaSampler::new(alpha)? })
    }

    fn sample_ratio(&self, rng: &mut SamixRng) -> f64 {
        let tau = self.lambda.sample(rng);
        if (SCALE.0..=SCALE.1).contains(&tau) {
            tau
        } else {
            rng.gen_range(SCALE.0..=SCALE.1)
        }
    }
}

impl MixPolicy for ResizeMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0] as usize, size[2], size[3]);
        let perm = random_pairing(n, rng, images.device());
        let b = random_box(h, w, self.sample_ratio(rng), rng);
        let out = images.copy();
        if b.area() > 0 {
            let (bh, bw) = (b.y1 - b.y0, b.x1 - b.x0);
            let small = images.index_select(0, &perm).upsample_nearest2d([bh, bw], None, None);
            out.narrow(2, b.y0, bh).narrow(3, b.x0, bw).copy_(&small);
        }
        let first_weight = Some(box_first_weight(h, w, b, images.device()));
        MixedBatch {
            images: out,
            targets: mix_targets(labels, &perm, b.keep_fraction(h, w)),
            first_weight,
            pairing: Some(perm),
        }
    }
}
