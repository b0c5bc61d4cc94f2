//! Post-processing of the Mixer's masks before they mix images (docs/ALGORITHM.md §3.3–§3.4): the
//! area adjustment to λ and the plain-mixup fallback for extreme λ, and the blend itself. Shared by
//! every scenario that trains with a Mixer (supervised, self-supervised, a frozen Mixer). Pure
//! tensor functions; touches no parameters.
use tch::Tensor;

/// Post-processing of the detached backbone mask: rescaling of each sample's mask so the first
/// image covers exactly λ of the pixels where `adjust` is 1 (§3.3, to the mask's own λ; `None`
/// when `mask_adjust` is 0), then the plain-mixup fallback for extreme λ (§3.4). Both are blends
/// with 0/1 weights rather than host branches, so they work on device-drawn λ (exact: `s·1 + 0`).
pub fn backbone_mask(s: Tensor, lam: &Tensor, adjust: Option<&Tensor>, lam_margin: f64) -> Tensor {
    let s = match adjust {
        Some(a) => {
            let a = a.to_kind(s.kind());
            &s * (1.0 - &a) + adjust_area(&s, lam) * &a
        }
        None => s,
    };
    let lam = lam.to_kind(s.kind());
    let one_minus: Tensor = 1.0 - &lam;
    let keep = lam.gt(lam_margin).logical_and(&one_minus.gt(lam_margin)).to_kind(s.kind());
    &s * &keep + one_minus * (1.0 - keep)
}

/// Rescales `s` per sample so that `mean(1 − s) = lam` (the first image's share).
pub fn adjust_area(s: &Tensor, lam: &Tensor) -> Tensor {
    let lam = lam.to_kind(s.kind());
    let first: Tensor = (-s + 1.0).clamp(1e-8, 1.0 - 1e-8);
    let mu = first.mean_dim(&[1i64, 2, 3][..], true, crate::native::compute_kind(s.kind()));
    let second: Tensor = -&first + 1.0;
    let shrink_first: Tensor = -(&first * (mu.reciprocal() * &lam)) + 1.0;
    let shrink_second: Tensor = &second * ((-&mu + 1.0).reciprocal() * (1.0 - &lam));
    let too_much_first = mu.gt_tensor(&(&lam + 1e-8));
    let too_little_first = mu.lt_tensor(&(&lam - 1e-8));
    shrink_first.where_self(&too_much_first, &shrink_second.where_self(&too_little_first, s))
}

/// Mixes two image batches with the weight map of the second: `x ⊙ (1 − s) + x2 ⊙ s`.
/// One fused `lerp` kernel (forward and backward) instead of four element-wise ones; exact at
/// s = 0 and s = 1. `s` is cast to the images' kind (under bf16 autocast the Mixer's matmuls
/// make it bf16), which is the promotion the element-wise form did.
pub fn apply_mask(x: &Tensor, x2: &Tensor, s: &Tensor) -> Tensor {
    x.lerp_tensor(x2, &s.to_kind(x.kind()))
}

/// The per-epoch statistics of how far the masks' areas are from their λ, as `metrics.jsonl`
/// names them: the mean `|area − λ|` (area: the first image's share of the mask, `mean(1 − s)`)
/// and the fraction of samples further than [`FAR_FROM_LAMBDA`] from λ, for the Mixer branch's
/// mask (`_mb`) and the backbone branch's after its area adjustment and λ-margin fallback (`_bb`).
/// A healthy Mixer keeps both near 0; a collapsed one (a mask all one image whatever λ) drives
/// them up.
pub const AREA_TERMS: [&str; 4] = ["mask_gap_mb", "mask_gap_bb", "mask_far_mb", "mask_far_bb"];

/// The distance of a mask's area from its λ beyond which [`AREA_TERMS`]' `mask_far_*` count it.
pub const FAR_FROM_LAMBDA: f64 = 0.25;

/// The mean `|mean(1 − s) − λ|` over a batch of masks `s` (`N×1×H×W`) and the fraction of them
/// further than [`FAR_FROM_LAMBDA`] from λ (`lam`: 0-dim or one per sample); detached.
pub fn area_gap(s: &Tensor, lam: &Tensor) -> (Tensor, Tensor) {
    let kind = tch::Kind::Float;
    let first_share = (-s.detach().to_kind(kind) + 1.0).mean_dim(&[1i64, 2, 3][..], false, kind);
    let gap = (first_share - lam.detach().to_kind(kind)).abs();
    (gap.mean(kind), gap.gt(FAR_FROM_LAMBDA).to_kind(kind).mean(kind))
}

/// The four [`AREA_TERMS`] of one step, named, from both branches' masks and λ.
pub fn area_terms(s_mb: &Tensor, lam_mb: &Tensor, s_bb: &Tensor, lam_bb: &Tensor) -> [(&'static str, Tensor); 4] {
    let (gap_mb, far_mb) = area_gap(s_mb, lam_mb);
    let (gap_bb, far_bb) = area_gap(s_bb, lam_bb);
    let [a, b, c, d] = AREA_TERMS;
    [(a, gap_mb), (b, gap_bb), (c, far_mb), (d, far_bb)]
}
