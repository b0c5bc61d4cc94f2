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
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// `policy = "attentivemix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttentivemixConfig {
    pub alpha: f64,
    /// The scoring classifier: a samix run or checkpoint folder (its EMA classifier for SAMix
    /// runs), or a samix weights file such as `samix convert` makes from torchvision's ImageNet
    /// ResNet-18 (the reference's scorer; architecture from `scorer_arch` and `scorer_stem`).
    pub checkpoint: PathBuf,
    /// Resize the batch to this side before scoring (the reference: 224 for an ImageNet net).
    #[serde(default)]
    pub upsample_to: Option<usize>,
    /// A weights file's architecture (default resnet18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorer_arch: Option<crate::model::Arch>,
    /// A weights file's stem (default imagenet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scorer_stem: Option<crate::model::Stem>,
    /// Score with the scorer's BatchNorm in train mode, as the reference does (its frozen scorer
    /// is never switched to eval): batch statistics, and its running statistics drift with the
    /// batches it scores. Off: the statistics the scorer was trained with.
    #[serde(default)]
    pub scorer_train_bn: bool,
}

impl AttentivemixConfig {
    /// The scorer `alpha` and this table name, reading a samix run or checkpoint folder.
    pub fn new(alpha: f64, checkpoint: PathBuf) -> Self {
        AttentivemixConfig {
            alpha,
            checkpoint,
            upsample_to: None,
            scorer_arch: None,
            scorer_stem: None,
            scorer_train_bn: false,
        }
    }

    /// The architecture of a scorer given as a weights file.
    pub fn scorer_model(&self) -> crate::model::ModelConfig {
        let arch = self.scorer_arch.unwrap_or(crate::model::Arch::Resnet18);
        crate::model::ModelConfig {
            stem: self.scorer_stem.unwrap_or(crate::model::Stem::Imagenet),
            ..crate::model::ModelConfig::new(arch)
        }
    }

    /// The policy around the loaded scorer `net` (variables in `vs`).
    pub fn build(&self, vs: VarStore, net: Network) -> Result<AttentiveMix> {
        let mut policy = AttentiveMix::new(self.alpha, vs, net, self.upsample_to.map(|s| s as i64))?;
        policy.train_bn = self.scorer_train_bn;
        Ok(policy)
    }
}

impl super::PolicyConfig for AttentivemixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        let side = self.upsample_to;
        side.map_or(Ok(()), |s| crate::limits::check_size("mix.upsample_to", s, crate::limits::MAX_IMAGE_SIDE))?;
        super::check_alpha(self.alpha)
    }
}

pub struct AttentiveMix {
    lambda: LambdaSampler,
    _vs: VarStore,
    net: Network,
    upsample_to: Option<i64>,
    /// Whether the scorer's BatchNorm runs in train mode (`scorer_train_bn`).
    pub train_bn: bool,
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
        Ok(AttentiveMix { lambda: LambdaSampler::new(alpha)?, _vs: vs, net, upsample_to, train_bn: false })
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
            let f = self.net.features(&input, self.train_bn, &[]).0;
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
        MixedBatch { images: mixed, targets, first_weight: Some(first), pairing: Some(perm) }
    }
}
