//! The `[ssl]` table: self-supervised pre-training with MoCo v2 (docs/ALGORITHM.md §6), with the
//! run's `[mix]` policy applied in its self-supervised form (none: MoCo v2; an input policy: the
//! SSL mixup baselines of §6.6; `samix`: SAMix-SSL of §6.2). Defaults are MoCo v2's CIFAR recipe.
use crate::limits::{check_size, check_tensor_bytes, MAX_FEATURE_DIM, MAX_QUEUE};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SslConfig {
    /// Width of the MLP neck's hidden layer (MoCo v2: 2048).
    pub hidden_dim: i64,
    /// Dimension of the L2-normalised embedding (MoCo v2: 128).
    pub feature_dim: i64,
    /// InfoNCE temperature τ (MoCo v2: 0.2).
    pub temperature: f64,
    /// Keys kept as negatives. Unset: the largest multiple of the batch size up to 65,536 and
    /// below the number of training images. Must be a multiple of the batch size.
    pub queue_size: Option<usize>,
    /// Momentum of the key encoder and neck, `p_k ← m·p_k + (1 − m)·p_q`, before each step's keys
    /// (the reference's 0.999; MoCo v2's CIFAR variants often use 0.99).
    pub momentum: f64,
    /// When set, the momentum rises from `momentum` to this along a half cosine over the run
    /// (BYOL's schedule); unset: constant.
    pub end_momentum: Option<f64>,
    /// The key encoder's batch normalisation runs over this many random sub-batches of the keys
    /// (the one-process stand-in for MoCo's shuffle-BN across GPUs; see docs/SSL.md). 1: off.
    pub key_bn_groups: usize,
    /// Input policies (mixup, cutmix, …): mix view 1 of one image with view 2 of its partner
    /// instead of two query views.
    pub cross_view: bool,
    /// Weight of the mixed-sample loss beside MoCo's own.
    pub mix_weight: f64,
    /// Keys of SAMix-SSL that moved to `[mix]` (the one table of SAMix keys): refused with
    /// the new key's name, never written.
    #[serde(skip_serializing)]
    pub mixer_loss: Option<toml::Value>,
    #[serde(skip_serializing)]
    pub eta: Option<toml::Value>,
    #[serde(skip_serializing)]
    pub mask_adjust: Option<toml::Value>,
    #[serde(skip_serializing)]
    pub mean_margin: Option<toml::Value>,
    /// Neighbours of the weighted k-NN monitor (InstDisc / MoCo: 200).
    pub knn_k: usize,
    /// Temperature of the k-NN vote weights `exp(sim/τ)` (0.1).
    pub knn_temperature: f64,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            hidden_dim: 2048,
            feature_dim: 128,
            temperature: 0.2,
            queue_size: None,
            momentum: 0.999,
            end_momentum: None,
            key_bn_groups: 4,
            cross_view: false,
            mix_weight: 1.0,
            mixer_loss: None,
            eta: None,
            mask_adjust: None,
            mean_margin: None,
            knn_k: 200,
            knn_temperature: 0.1,
        }
    }
}

/// The queue size MoCo v2 uses.
pub const DEFAULT_QUEUE: usize = 65_536;

impl SslConfig {
    /// The SAMix-SSL keys that moved to `[mix]`: one error naming the new key.
    fn check_moved_keys(&self) -> Result<()> {
        let moved = [
            (&self.mixer_loss, "mixer_loss", "mix.mixer_loss.kind (e.g. [mix.mixer_loss] kind = \"local_global\")"),
            (&self.eta, "eta", "mix.mixer_loss.eta"),
            (&self.mask_adjust, "mask_adjust", "mix.mask_adjust (\"auto\" or a probability)"),
            (&self.mean_margin, "mean_margin", "mix.mean_margin"),
        ];
        match moved.into_iter().find(|(value, ..)| value.is_some()) {
            Some((_, old, new)) => Err(Error::config(
                format!("ssl.{old}"),
                format!("has moved to [mix] with the other SAMix keys: set {new}"),
            )),
            None => Ok(()),
        }
    }

    /// The queue size for a global batch of `batch` keys and `train_images` training images.
    pub fn queue_len(&self, batch: usize, train_images: usize) -> usize {
        self.queue_size.unwrap_or_else(|| {
            let batch = batch.max(1);
            let limit = DEFAULT_QUEUE.min(train_images.saturating_sub(1));
            (limit / batch * batch).max(batch)
        })
    }

    /// The key encoder's momentum before step `step` of `total`.
    pub fn momentum_at(&self, step: u64, total: u64) -> f64 {
        match self.end_momentum {
            None => self.momentum,
            Some(end) => {
                let progress = step as f64 / total.max(1) as f64;
                end - (end - self.momentum) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
            }
        }
    }

    /// Parameters of the MLP neck over `features` backbone channels (two linear layers).
    pub fn neck_parameters(&self, features: u64) -> u64 {
        let (hidden, out) = (self.hidden_dim.max(0) as u64, self.feature_dim.max(0) as u64);
        hidden.saturating_mul(features + 1).saturating_add(out.saturating_mul(hidden + 1))
    }

    /// Range checks for a global batch of `batch` images; errors name the key under `ssl`.
    pub fn check(&self, batch: usize) -> Result<()> {
        let fail = |key: &str, msg: String| Err(Error::config(format!("ssl.{key}"), msg));
        if self.hidden_dim < 1 || self.feature_dim < 1 {
            return fail("feature_dim", "hidden_dim and feature_dim must be at least 1".into());
        }
        check_size("ssl.hidden_dim", self.hidden_dim, MAX_FEATURE_DIM)?;
        check_size("ssl.feature_dim", self.feature_dim, MAX_FEATURE_DIM)?;
        let queue = self.queue_size.unwrap_or(DEFAULT_QUEUE);
        check_size("ssl.queue_size", queue, MAX_QUEUE)?;
        let queue_bytes = (queue as u64).saturating_mul(self.feature_dim as u64).saturating_mul(4);
        check_tensor_bytes("ssl.queue_size, ssl.feature_dim", "the key queue", queue_bytes)?;
        for (key, v) in [("temperature", self.temperature), ("knn_temperature", self.knn_temperature)] {
            if !(v.is_finite() && v > 0.0) {
                return fail(key, format!("{v} is not a positive number"));
            }
        }
        for (key, v) in [("momentum", Some(self.momentum)), ("end_momentum", self.end_momentum)] {
            if v.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
                return fail(key, "must be in [0, 1]".into());
            }
        }
        if let Some(q) = self.queue_size {
            if q == 0 || !q.is_multiple_of(batch.max(1)) {
                return fail("queue_size", format!("{q} must be a positive multiple of train.batch_size ({batch})"));
            }
        }
        if self.key_bn_groups == 0 {
            return fail("key_bn_groups", "must be at least 1".into());
        }
        if !(self.mix_weight.is_finite() && self.mix_weight >= 0.0) {
            return fail("mix_weight", "must be a number >= 0".into());
        }
        self.check_moved_keys()?;
        if self.knn_k == 0 {
            return fail("knn_k", "must be at least 1".into());
        }
        Ok(())
    }
}
