//! Classification losses on logits: cross-entropy with label smoothing, and the mixup
//! cross-entropy over (y_a, y_b, λ) with per-sample λ. All are batch means.
use crate::mix::MixedTargets;
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
    let mixed: Tensor = &t.lam * ce_a + (1.0 - &t.lam) * ce_b;
    mixed.mean(None)
}

/// `−mean_n Σ_c target[n,c]·log softmax(z_n)_c` for dense (soft) targets.
pub fn soft_cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    -(target * logits.log_softmax(-1, tch::Kind::Float)).sum_dim_intlist(-1, false, tch::Kind::Float).mean(None)
}
