//! Losses: classification on logits (cross-entropy with label smoothing, the mixup cross-entropy
//! over (y_a, y_b, λ) with per-sample λ, timm's binary cross-entropy on mixed targets, the Mixer's η-balanced family) and the contrastive
//! InfoNCE family of self-supervised training ([`contrastive`]). All are batch means.
use crate::mix::MixedTargets;
use crate::native::compute_kind;
use tch::{Reduction, Tensor};

/// Per-sample CE (`[N]`) with label smoothing ε: (1−ε)·CE(y) + ε·mean_c(−log p_c).
pub fn cross_entropy_per_sample(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, smoothing)
}

pub fn cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Tensor {
    cross_entropy_per_sample(logits, labels, smoothing).mean(None)
}

/// `mean_n [ λ_n·CE(z_n, y_a[n]) + (1−λ_n)·CE(z_n, y_b[n]) ]`.
pub fn mixup_cross_entropy(logits: &Tensor, t: &MixedTargets, smoothing: f64) -> Tensor {
    let ce_a = cross_entropy_per_sample(logits, &t.y_a, smoothing);
    let ce_b = cross_entropy_per_sample(logits, &t.y_b, smoothing);
    // ce_b + λ·(ce_a − ce_b) = λ·ce_a + (1−λ)·ce_b, as one fused kernel.
    ce_b.lerp_tensor(&ce_a, &t.lam.to_kind(ce_b.kind())).mean(None)
}

/// The classification loss of a supervised run (`train.loss`): the reference's cross-entropy,
/// or timm's binary cross-entropy on the mixed targets (its "ResNet strikes back" recipe).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassLoss {
    #[default]
    Ce,
    Bce,
}

/// timm's `BinaryCrossEntropy` on mixed targets: the dense target `λ·t(y_a) + (1−λ)·t(y_b)`,
/// `t(y)` the one-hot smoothed as timm's mixup smooths it (off = ε/K, on = 1 − ε + ε/K), made 0/1
/// above `threshold` where one is given (timm's `target_threshold`), then BCE with logits averaged
/// over every sample and class.
pub fn mixup_binary_cross_entropy(logits: &Tensor, t: &MixedTargets, smoothing: f64, threshold: Option<f64>) -> Tensor {
    let kind = compute_kind(logits.kind());
    let classes = logits.size().last().copied().unwrap_or(1);
    let off = smoothing / classes as f64;
    let smoothed = |y: &Tensor| y.one_hot(classes).to_kind(kind) * (1.0 - smoothing) + off;
    let lam = t.lam.to_kind(kind).unsqueeze(-1);
    let mut target = smoothed(&t.y_b).lerp_tensor(&smoothed(&t.y_a), &lam);
    if let Some(th) = threshold {
        target = target.gt(th).to_kind(kind);
    }
    logits.to_kind(kind).binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::Mean)
}

/// `−mean_n Σ_c target[n,c]·log softmax(z_n)_c` for dense (soft) targets.
pub fn soft_cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    let kind = compute_kind(logits.kind());
    -(target * logits.log_softmax(-1, kind)).sum_dim_intlist(-1, false, kind).mean(None)
}

/// The mixup classification loss of a head, as a family (docs/ALGORITHM.md §5). With
/// `ỹ = λ·e_a + (1−λ)·e_b`, `p = softmax(z)`:
/// - `SoftCe`: `−λ log p_a − (1−λ) log p_b` — what the reference's released SAMix SL configs
///   effectively run (its η weights multiply zero terms, §5.3).
/// - `PairLocalGlobal { eta }` (default for SAMix's Mixer, Form B): a *local* 2-way softmax
///   between the two mixed classes, `−λ log σ(z_a − z_b) − (1−λ) log σ(z_b − z_a)` (0 when
///   a = b), plus `eta ×` the *global* mixup CE over all classes.
/// - `BceNeg { eta }` (Form A): `Σ_c w_c·BCE(z_c, ỹ_c)` with `w_c = 1` on the two mixed classes
///   and `eta` on every other class (the reference's sigmoid head with `neg_weight = η`).
/// - `Decoupled { eta }` (DecoupleMix): `SoftCe + eta · Σ_{t∈{a,b}} −log( e^{z_t} / (e^{z_t} +
///   Σ_{c∉{a,b}} e^{z_c}) )`; rows with a = b keep only the soft CE.
///
/// All are means over the batch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MixupLoss {
    SoftCe,
    PairLocalGlobal { eta: f64 },
    BceNeg { eta: f64 },
    Decoupled { eta: f64 },
}

impl MixupLoss {
    /// The weight η of the variants that have one.
    pub fn eta(&self) -> Option<f64> {
        match *self {
            MixupLoss::SoftCe => None,
            MixupLoss::PairLocalGlobal { eta } | MixupLoss::BceNeg { eta } | MixupLoss::Decoupled { eta } => Some(eta),
        }
    }

    pub fn compute(&self, logits: &Tensor, t: &MixedTargets) -> Tensor {
        let kind = compute_kind(logits.kind());
        let logits = logits.to_kind(kind);
        match *self {
            MixupLoss::SoftCe => mixup_cross_entropy(&logits, t, 0.0),
            MixupLoss::PairLocalGlobal { eta } => {
                let (za, zb) = (gather(&logits, &t.y_a), gather(&logits, &t.y_b));
                let diff = &za - &zb;
                let lam_b: Tensor = -&t.lam + 1.0;
                let local: Tensor = -(diff.log_sigmoid() * &t.lam + (-&diff).log_sigmoid() * lam_b);
                let local = local.masked_fill(&t.y_a.eq_tensor(&t.y_b), 0.0);
                local.mean(None) + mixup_cross_entropy(&logits, t, 0.0) * eta
            }
            MixupLoss::BceNeg { eta } => {
                let k = logits.size()[1];
                let target = t.to_dense(k, 0.0);
                let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, tch::Reduction::None);
                let weight = target.gt(0.0).to_kind(kind) * (1.0 - eta) + eta;
                (bce * weight).sum_dim_intlist(-1, false, kind).mean(None)
            }
            MixupLoss::Decoupled { eta } => {
                let k = logits.size()[1];
                let pair = t.y_a.one_hot(k) + t.y_b.one_hot(k);
                let others = logits.masked_fill(&pair.gt(0), f64::NEG_INFINITY).logsumexp([-1], false);
                let term = |z: &Tensor| -(z - z.logaddexp(&others));
                let decoupled = (term(&gather(&logits, &t.y_a)) + term(&gather(&logits, &t.y_b)))
                    .masked_fill(&t.y_a.eq_tensor(&t.y_b), 0.0);
                mixup_cross_entropy(&logits, t, 0.0) + decoupled.mean(None) * eta
            }
        }
    }
}

fn gather(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.gather(1, &y.unsqueeze(1), false).squeeze_dim(1)
}

/// The contrastive (InfoNCE) losses of self-supervised training (docs/ALGORITHM.md §5.5, §6.1).
/// Queries `z` and positive keys are `N×D` and L2-normalised; the negatives are the columns of a
/// `D×K` queue. Per sample, with `s = z·pos / τ` and `n = z·queue / τ`, the loss is the
/// cross-entropy of the positive among `[s, n]`: `−s + log(e^s + Σ e^n)`. The negatives' log-sum
/// is computed once and shared by the positives of a mixed sample.
pub mod contrastive {
    use crate::native::compute_kind;
    use tch::Tensor;

    /// `log Σ_q exp(z·queue_q / τ)` per sample (`N`).
    pub fn negatives_logsumexp(z: &Tensor, queue: &Tensor, tau: f64) -> Tensor {
        (z.matmul(queue) / tau).logsumexp([1i64].as_slice(), false)
    }

    /// InfoNCE per sample for positives `pos`, given the negatives' log-sum of
    /// [`negatives_logsumexp`].
    pub fn info_nce_with(z: &Tensor, pos: &Tensor, neg_lse: &Tensor, tau: f64) -> Tensor {
        let s = (z * pos).sum_dim_intlist(1, false, compute_kind(z.kind())) / tau;
        -&s + s.logaddexp(neg_lse)
    }

    /// Mean InfoNCE of `z` against `pos` and the queue (MoCo's loss).
    pub fn info_nce(z: &Tensor, pos: &Tensor, queue: &Tensor, tau: f64) -> Tensor {
        info_nce_with(z, pos, &negatives_logsumexp(z, queue, tau), tau).mean(compute_kind(z.kind()))
    }

    /// The global mixed loss: `λ·InfoNCE(z, pos_a) + (1 − λ)·InfoNCE(z, pos_b)` averaged over the
    /// batch, λ a 0-dim tensor or one weight per sample (`N`).
    pub fn mixed_info_nce(
        z: &Tensor,
        pos_a: &Tensor,
        pos_b: &Tensor,
        lam: &Tensor,
        queue: &Tensor,
        tau: f64,
    ) -> Tensor {
        let kind = compute_kind(z.kind());
        let lse = negatives_logsumexp(z, queue, tau);
        let lam = lam.to_kind(kind);
        let (a, b) = (info_nce_with(z, pos_a, &lse, tau), info_nce_with(z, pos_b, &lse, tau));
        let weighted: Tensor = &lam * a + (1.0 - &lam) * b;
        weighted.mean(kind)
    }

    /// The reference's extended positive (`feat_pos_extend`): `n(u⊙pos + (1−u)⊙own)` per row,
    /// `u` element-wise (`N×D`), `n` the L2 normalisation.
    pub fn extend_positives(pos: &Tensor, own: &Tensor, u: &Tensor) -> Tensor {
        let blend: Tensor = u * pos + (1.0 - u) * own;
        let norm = blend.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
        blend / norm
    }

    /// The local loss: a two-way softmax between the two positives only, fitted to (λ, 1 − λ),
    /// averaged over the batch.
    pub fn pair_info_nce(z: &Tensor, pos_a: &Tensor, pos_b: &Tensor, lam: &Tensor, tau: f64) -> Tensor {
        let kind = compute_kind(z.kind());
        let s_a = (z * pos_a).sum_dim_intlist(1, false, kind) / tau;
        let s_b = (z * pos_b).sum_dim_intlist(1, false, kind) / tau;
        let lse = s_a.logaddexp(&s_b);
        let lam = lam.to_kind(kind);
        let weighted: Tensor = &lam * (&lse - s_a) + (1.0 - &lam) * (lse - s_b);
        weighted.mean(kind)
    }
}
