//! The weighted k-nearest-neighbour monitor of self-supervised training (InstDisc, MoCo): every
//! test feature votes with its `k` most cosine-similar training features, each vote weighted
//! `exp(sim/τ)` and given to that neighbour's label. Features are L2-normalised by the caller.
//! Pure tensor functions; labels are read here only, never by pre-training.
use tch::{Kind, Tensor};

/// The memory bank: normalised training features `M×D` with their labels `M`.
pub struct Bank {
    pub features: Tensor,
    pub labels: Tensor,
    pub classes: i64,
}

/// Per test sample: [top-1 correct, top-5 correct, −log of the true class's share of the votes].
pub struct KnnCounts {
    pub top1: Tensor,
    pub top5: Tensor,
    pub nll: Tensor,
}

impl Bank {
    /// The class votes `N×classes` of normalised test features `N×D`.
    pub fn votes(&self, features: &Tensor, k: usize, tau: f64) -> Tensor {
        let sims = features.to_kind(Kind::Float).matmul(&self.features.to_kind(Kind::Float).transpose(0, 1));
        let k = (k as i64).min(self.features.size()[0]).max(1);
        let (top_sims, top_idx) = sims.topk(k, 1, true, true);
        let neighbour_labels = self.labels.index_select(0, &top_idx.flatten(0, -1)).view_as(&top_idx);
        let weights = (top_sims / tau).exp();
        Tensor::zeros([features.size()[0], self.classes], (Kind::Float, features.device())).scatter_add(
            1,
            &neighbour_labels,
            &weights,
        )
    }

    /// Sums over a batch of test features and their labels.
    pub fn count(&self, features: &Tensor, labels: &Tensor, k: usize, tau: f64) -> KnnCounts {
        let votes = self.votes(features, k, tau);
        let top = votes.topk(self.classes.min(5), 1, true, true).1;
        let labels_col = labels.unsqueeze(1);
        let top1 = top.narrow(1, 0, 1).eq_tensor(&labels_col).sum(Kind::Int64);
        let top5 = top.eq_tensor(&labels_col).any_dim(1, false).sum(Kind::Int64);
        let share = votes.gather(1, &labels_col, false).squeeze_dim(1)
            / votes.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-30);
        let nll = -share.clamp_min(1e-12).log().sum(Kind::Float);
        KnnCounts { top1, top5, nll }
    }
}
