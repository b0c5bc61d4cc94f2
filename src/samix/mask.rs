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
