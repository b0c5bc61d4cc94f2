//! TransMix (Chen et al., 2022) as the reference runs it on DeiT: each step is MixUp (with
//! probability `mixup_prob`) or a CutMix box shared by the batch, whose label weight is re-set
//! from the vision transformer's own attention: the last block's class-token attention over the
//! patches (mean over heads) measures how much of the image the network attended to on each side
//! of the box, and λ = `area_weight`·λ_area + (1 − `area_weight`)·λ_attention, per sample and
//! without gradient. The box is read on the patch grid by each patch's top-left pixel (the
//! reference's nearest-neighbour resize). Each sample is weighted by its own λ, as the paper
//! states; the reference's loss averages λ over the batch before weighting (a deviation samix
//! does not copy, docs/DESIGN.md). Touches nothing but the batch it mixes.
use super::cutmix::{cutmix_box, paste_box, CutBox};
use super::{mix_targets, needs_the_model, random_pairing, LambdaSampler, MixedForward, MixedTargets};
use crate::model::StagedNet;
use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// `policy = "transmix"`: CutMix's α (`alpha`), and MixUp's α and share of the steps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransmixConfig {
    /// CutMix's λ ~ Beta(α, α) (the reference's DeiT configs: 1).
    pub alpha: f64,
    /// MixUp's α on the steps that mix up instead (the reference: 0.8).
    #[serde(default = "TransmixConfig::default_mixup_alpha")]
    pub mixup_alpha: f64,
    /// The share of steps that mix up instead of TransMix (the reference: 0.2).
    #[serde(default = "TransmixConfig::default_mixup_prob")]
    pub mixup_prob: f64,
    /// The weight of the box's area in λ, the attention's taking the rest (the reference: ½).
    #[serde(default = "TransmixConfig::default_area_weight")]
    pub area_weight: f64,
}

impl TransmixConfig {
    fn default_mixup_alpha() -> f64 {
        0.8
    }
    fn default_mixup_prob() -> f64 {
        0.2
    }
    fn default_area_weight() -> f64 {
        0.5
    }
    pub fn build(&self) -> Result<TransMix> {
        Ok(TransMix {
            cutmix: LambdaSampler::new(self.alpha)?,
            mixup: LambdaSampler::new(self.mixup_alpha)?,
            mixup_prob: self.mixup_prob,
            area_weight: self.area_weight,
        })
    }
}

impl super::PolicyConfig for TransmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)?;
        if !(self.mixup_alpha.is_finite() && self.mixup_alpha > 0.0) {
            return Err(Error::config("mix.mixup_alpha", "must be a positive number"));
        }
        for (key, v) in [("mix.mixup_prob", self.mixup_prob), ("mix.area_weight", self.area_weight)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(key, "must be in [0, 1]"));
            }
        }
        Ok(())
    }
    fn build_input(&self) -> Result<Box<dyn super::MixPolicy + Send>> {
        Err(needs_the_model())
    }
}

#[derive(Clone, Debug)]
pub struct TransMix {
    cutmix: LambdaSampler,
    mixup: LambdaSampler,
    mixup_prob: f64,
    area_weight: f64,
}

impl TransMix {
    pub fn forward(
        &self,
        net: &dyn StagedNet,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        rng: &mut SamixRng,
    ) -> Result<MixedForward> {
        let perm = random_pairing(x.size()[0] as usize, rng, x.device());
        let partner = x.index_select(0, &perm);
        if rng.gen_bool(self.mixup_prob) {
            let lam = self.mixup.sample(rng);
            let logits = net.forward_stages(&(x * lam + &partner * (1.0 - lam)), train, &[]).0;
            return Ok(MixedForward { logits, targets: mix_targets(y, &perm, lam), mixed_at: 0 });
        }
        let (h, w) = (x.size()[2], x.size()[3]);
        let b = cutmix_box(h, w, self.cutmix.sample(rng), rng);
        let (logits, attention) =
            net.forward_with_class_attention(&paste_box(x, &partner, b), train).ok_or_else(|| {
                Error::config(
                    "mix.policy",
                    "transmix reads a vision transformer's class-token attention (model.arch = deit_*)",
                )
            })?;
        let lam = transmix_lambda(b, h, w, &attention.detach(), self.area_weight);
        let targets = MixedTargets { y_a: y.shallow_clone(), y_b: y.index_select(0, &perm), lam };
        Ok(MixedForward { logits, targets, mixed_at: 0 })
    }
}

/// TransMix's per-sample weight of the first image: `area_weight`·(the box's kept fraction) +
/// (1 − `area_weight`)·(the share of each sample's class-token attention `attention` (N × g²,
/// patches in row order) that falls on patches outside box `b` of an `h × w` image). A patch is
/// inside the box when its top-left pixel is.
pub fn transmix_lambda(b: CutBox, h: i64, w: i64, attention: &Tensor, area_weight: f64) -> Tensor {
    let tokens = attention.size()[1];
    let grid = (tokens as f64).sqrt().round() as i64;
    let (ph, pw) = (h / grid.max(1), w / grid.max(1));
    let inside: Vec<f32> = (0..grid)
        .flat_map(|i| (0..grid).map(move |j| (i * ph, j * pw)))
        .map(|(py, px)| f32::from(u8::from(py >= b.y0 && py < b.y1 && px >= b.x0 && px < b.x1)))
        .collect();
    let inside = Tensor::from_slice(&inside).to_device(attention.device()).to_kind(attention.kind()).view([1, tokens]);
    let total = attention.sum_dim_intlist(1, false, attention.kind());
    let on_box = (attention * inside).sum_dim_intlist(1, false, attention.kind());
    let attention_lam = (&total - on_box) / total;
    (attention_lam * (1.0 - area_weight) + area_weight * b.keep_fraction(h, w)).to_kind(tch::Kind::Float)
}
