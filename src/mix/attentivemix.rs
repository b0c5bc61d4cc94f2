//! AttentiveMix+ (Walawalkar et al. 2020, OpenMixup's variant): a frozen, pre-trained classifier
//! scores the cells of its last feature map of the *first* images (channel mean); the top
//! ⌊cells·λ⌋ cells (at least one) keep the first image and the rest take the partner. λ for the
//! labels is each sample's kept area (per sample). The reference uses an ImageNet ResNet-18 at
//! 224 px; samix takes any samix checkpoint (`checkpoint = "runs/x"`), run at the batch's size or
//! upsampled to `upsample_to`. This is the one input policy that holds a network (frozen).
use super::{blend, random_pairing, LambdaSampler, MixPolicy, MixedBatch, MixedTargets};
use crate::model::{Network, StagedNet};
use crate::rng::SamixRng;
use crate::Result;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

pub struct AttentiveMix {
    lambda: LambdaSampler,
    _vs: VarStore,
    net: Network,
    upsample_to: Option<i64>,
}

impl AttentiveMix {
    /// Channels of the images the scoring network reads.
    pub fn in_channels(&self) -> i64 {
        crate::model::StagedNet::in_channels(&self.net)
    }
}

impl std::fmt::Debug for AttentiveMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AttentiveMix(α {}, {:?})", self.lambda.alpha(), self.net)
    }
}

impl AttentiveMix {
    /// `net` (with its variables in `vs`) is frozen here.
    pub fn new(alpha: f64, mut vs: VarStore, net: Network, upsample_to: Option<i64>) -> Result<Self> {
        vs.freeze();
        Ok(AttentiveMix { lambda: LambdaSampler::new(alpha)?, _vs: vs, net, upsample_to })
    }

    /// The first image's weight map (`N×1×H×W`, binary) keeping the `⌊cells·λ⌋` best cells.
    pub fn first_weight(&self, images: &Tensor, lam: f64) -> Tensor {
        let size = images.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        tch::no_grad(|| {
            let input = match self.upsample_to {
                Some(s) => images.upsample_bilinear2d([s, s], false, None, None),
                None => images.shallow_clone(),
            };
            let f = self.net.features(&input, false, &[]).0;
            let (gh, gw) = (f.size()[2], f.size()[3]);
            let cells = gh * gw;
            let scores = f.mean_dim(1, false, Kind::Float).view([n, cells]);
            let k = ((cells as f64 * lam).floor() as i64).clamp(1, cells);
            let top = scores.topk(k, -1, true, false).1;
            let keep = Tensor::zeros([n, cells], (Kind::Float, images.device())).scatter_value(1, &top, 1.0);
            keep.view([n, 1, gh, gw]).upsample_nearest2d([h, w], None, None)
        })
    }
}

impl MixPolicy for AttentiveMix {
    fn mix(&self, images: &Tensor, labels: &Tensor, rng: &mut SamixRng) -> MixedBatch {
        let n = images.size()[0];
        let perm = random_pairing(n as usize, rng, images.device());
        let lam = self.lambda.sample(rng);
        let first = self.first_weight(images, lam);
        let mixed = blend(images, &images.index_select(0, &perm), &first);
        let kept = first.mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let targets = MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam: kept };
        MixedBatch { images: mixed, targets, mask: Some(first), pairing: Some(perm) }
    }
}
