//! The two branches of a SAMix step, shared by every scenario that trains with a Mixer
//! (supervised online SAMix, self-supervised SAMix): the Mixer branch (the mask with gradient to
//! the Mixer, its regulariser, the mixed images) and the backbone branch (the detached,
//! post-processed mask and its mixed images), over a pair given explicitly ([`PairInputs`]).
//! Pure functions of the Mixer and the inputs; touch no parameters.
use super::config::SamixOptions;
use super::mask::{apply_mask, backbone_mask};
use super::mask_loss::mask_loss;
use super::mixer::Mixer;
use tch::Tensor;

/// The two halves of a mixed batch: features `f` and images `x` of the first samples, and
/// `f_pair`, `x_pair` of their partners (supervised: the batch and its permutation; self-
/// supervised: view 1 and the permuted view 2).
pub struct PairInputs {
    pub f: Tensor,
    pub f_pair: Tensor,
    pub x: Tensor,
    pub x_pair: Tensor,
}

impl PairInputs {
    /// A batch paired with its own permutation `perm` (sample n with sample `perm[n]`).
    pub fn permuted(f: &Tensor, x: &Tensor, perm: &Tensor) -> Self {
        PairInputs {
            f: f.shallow_clone(),
            f_pair: f.index_select(0, perm),
            x: x.shallow_clone(),
            x_pair: x.index_select(0, perm),
        }
    }
}

/// How the backbone branch rescales its mask to its λ's area (§3.3, §6.3).
#[derive(Clone, Copy, Debug)]
pub enum AreaAdjust<'a> {
    Off,
    /// Every sample when the flag (a 0-dim 0/1 tensor, drawn with probability `mask_adjust`) is 1.
    Flag(&'a Tensor),
    /// Each sample whose first-image share is further than `margin` from λ (`mask_adjust =
    /// "auto"`, SAMix-SSL's default).
    Auto {
        margin: f64,
    },
}

/// The Mixer branch (shared by every scenario): the mask for the pair at λ `lam` (with gradient
/// to the Mixer), its regulariser, and the mixed images.
pub fn mixer_branch(
    mixer: &Mixer,
    options: &SamixOptions,
    pair: &PairInputs,
    lam: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let s = mixer.mask_of(&pair.f, &pair.f_pair, lam, true);
    let loss = mask_loss(&s, lam, &options.mask_loss);
    let mixed = apply_mask(&pair.x, &pair.x_pair, &s);
    (s, loss, mixed)
}

/// The backbone branch's mixed images (shared by every scenario): the Mixer's mask under no grad,
/// post-processed ([`backbone_mask`]), applied to the pair. Returns (mask, images).
pub fn backbone_branch(
    mixer: &Mixer,
    options: &SamixOptions,
    pair: &PairInputs,
    lam: &Tensor,
    adjust: AreaAdjust,
) -> (Tensor, Tensor) {
    let s = tch::no_grad(|| mixer.mask_of(&pair.f, &pair.f_pair, lam, true));
    let auto_flags;
    let flag = match adjust {
        AreaAdjust::Off => None,
        AreaAdjust::Flag(a) => Some(a),
        AreaAdjust::Auto { margin } => {
            let kind = crate::native::compute_kind(s.kind());
            let first_share = (-&s + 1.0).mean_dim(&[1i64, 2, 3][..], true, kind);
            auto_flags = (first_share - lam.to_kind(kind)).abs().gt(margin).to_kind(s.kind());
            Some(&auto_flags)
        }
    };
    let s = backbone_mask(s, lam, flag, options.lam_margin);
    let mixed = apply_mask(&pair.x, &pair.x_pair, &s);
    (s, mixed)
}
