//! MoCo v2 (docs/ALGORITHM.md §6.1): a query encoder with its MLP neck, their momentum copies (the
//! key side, frozen, following the query side by EMA), and the FIFO queue of normalised keys.
//! Generic over the backbone ([`StagedNet`]). Touches only these networks and the queue; the
//! optimiser, the draws and the losses' weighting belong to the caller.
use super::config::SslConfig;
use crate::model::StagedNet;
use crate::samix::ema::path_prefix;
use crate::samix::Ema;
use crate::Result;
use tch::nn::{self, Module, VarStore};
use tch::{Kind, Tensor};

/// MoCo v2's projection neck: global average pooling → Linear → ReLU → Linear.
#[derive(Debug)]
pub struct MocoNeck {
    hidden: nn::Linear,
    out: nn::Linear,
}

impl MocoNeck {
    pub fn new(path: &nn::Path, in_dim: i64, cfg: &SslConfig) -> Self {
        MocoNeck {
            hidden: nn::linear(path / "fc1", in_dim, cfg.hidden_dim, Default::default()),
            out: nn::linear(path / "fc2", cfg.hidden_dim, cfg.feature_dim, Default::default()),
        }
    }
}

impl Module for MocoNeck {
    /// Pooled backbone features `N×C` (the encoder's [`StagedNet::pool`]) → the unnormalised
    /// embedding `N×D`.
    fn forward(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.hidden).relu().apply(&self.out)
    }
}

/// Where MoCo's parts live in a VarStore.
pub struct MocoPaths<'a> {
    /// The query encoder and its neck (`neck`), trained.
    pub query: nn::Path<'a>,
    /// Their momentum copies.
    pub key: nn::Path<'a>,
    /// The queue.
    pub moco: nn::Path<'a>,
    /// SAMix-SSL's Mixer.
    pub mixer: nn::Path<'a>,
}

impl<'a> MocoPaths<'a> {
    /// samix's layout: `q.*` (query side, the backbone a run exports), `k.*`, `moco.queue`,
    /// `mixer.*`.
    pub fn standard(vs: &'a VarStore) -> Self {
        let root = vs.root();
        MocoPaths { query: &root / "q", key: &root / "k", moco: &root / "moco", mixer: &root / "mixer" }
    }
}

pub struct Moco<N> {
    pub encoder_q: N,
    pub neck_q: MocoNeck,
    /// Momentum copies: no gradient ever reaches their parameters.
    pub encoder_k: N,
    pub neck_k: MocoNeck,
    /// `D×K` normalised keys, oldest overwritten first. A VarStore variable (not trained), so
    /// checkpoints hold it; the write position follows from the step count
    /// ([`Moco::queue_position`]).
    pub queue: Tensor,
    pub cfg: SslConfig,
    momentum: Ema,
}

impl<N: StagedNet> Moco<N> {
    /// Takes two copies of one backbone built under `paths.query` and `paths.key` (in that order),
    /// adds the necks, makes the key side equal to the query side and frozen, and fills a queue
    /// of `queue_len` random unit keys (from libtorch's seeded generator).
    pub fn new(
        vs: &VarStore,
        paths: &MocoPaths,
        encoder_q: N,
        encoder_k: N,
        cfg: SslConfig,
        queue_len: usize,
    ) -> Result<Self> {
        let width = *encoder_q.stage_channels().last().unwrap_or(&1);
        let neck_q = MocoNeck::new(&(&paths.query / "neck"), width, &cfg);
        let neck_k = MocoNeck::new(&(&paths.key / "neck"), width, &cfg);
        let mut queue = paths.moco.zeros_no_train("queue", &[cfg.feature_dim, queue_len as i64]);
        tch::no_grad(|| {
            let init = Tensor::randn([cfg.feature_dim, queue_len as i64], (Kind::Float, vs.device()));
            queue.copy_(&normalize_rows(&init.transpose(0, 1)).transpose(0, 1));
        });
        let momentum = Ema::new(vs, &paths.query, &paths.key)?;
        Ok(Moco { encoder_q, neck_q, encoder_k, neck_k, queue, cfg, momentum })
    }

    pub fn queue_len(&self) -> usize {
        self.queue.size()[1] as usize
    }

    /// Where the keys of step `step` go when every step enqueues `keys_per_step` keys (the
    /// queue's length is a multiple of it).
    pub fn queue_position(&self, step: u64, keys_per_step: usize) -> usize {
        ((step as u128 * keys_per_step as u128) % self.queue_len().max(1) as u128) as usize
    }

    /// `p_k ← m·p_k + (1 − m)·p_q` over the parameters of encoder and neck (MoCo: before the
    /// step's keys are computed).
    pub fn momentum_update(&self, m: f64) -> Result<()> {
        self.momentum.update(m)
    }

    /// Normalised query embeddings of `x` (with gradient to the query side).
    pub fn query(&self, x: &Tensor, train: bool) -> Tensor {
        normalize_rows(&self.neck_q.forward(&self.encoder_q.pool(&self.encoder_q.features(x, train, &[]).0)))
    }

    /// Normalised embeddings of `x` by the frozen key side in train mode (batch statistics): the
    /// gradient reaches `x` (the Mixer's images), never the key side's parameters.
    pub fn embed_k(&self, x: &Tensor) -> Tensor {
        normalize_rows(&self.neck_k.forward(&self.encoder_k.pool(&self.encoder_k.features(x, true, &[]).0)))
    }

    /// Keys of `x` under no grad. Batch normalisation runs over `key_bn_groups` sub-batches of
    /// the images in the order `shuffle` (a permutation of the batch), so a key's statistics come
    /// from a random subset of the batch rather than from the batch its query saw (MoCo's
    /// shuffle-BN, within one process). Results are in `x`'s order.
    pub fn keys(&self, x: &Tensor, shuffle: &Tensor) -> Tensor {
        self.key_pass(x, shuffle, None).0
    }

    /// As [`Moco::keys`], with the key encoder's output of stage `stage` (what a Mixer reads);
    /// fails when the encoder has no such stage.
    pub fn keys_and_maps(&self, x: &Tensor, shuffle: &Tensor, stage: usize) -> Result<(Tensor, Tensor)> {
        match self.key_pass(x, shuffle, Some(stage)) {
            (keys, Some(maps)) => Ok((keys, maps)),
            (_, None) => Err(crate::Error::config("mix.mask_stage", format!("the key encoder has no stage {stage}"))),
        }
    }

    fn key_pass(&self, x: &Tensor, shuffle: &Tensor, stage: Option<usize>) -> (Tensor, Option<Tensor>) {
        tch::no_grad(|| {
            let shuffled = x.index_select(0, shuffle);
            let keep: Vec<usize> = stage.into_iter().collect();
            // Sub-batches of at least two images: train-mode BN needs two values per channel.
            let groups = self.cfg.key_bn_groups.min((x.size()[0] / 2).max(1) as usize) as i64;
            let (mut keys, mut maps) = (Vec::new(), Vec::new());
            for chunk in shuffled.chunk(groups, 0) {
                let (last, kept) = self.encoder_k.features(&chunk, true, &keep);
                keys.push(normalize_rows(&self.neck_k.forward(&self.encoder_k.pool(&last))));
                maps.extend(kept);
            }
            let inverse = shuffle.argsort(0, false);
            let keys = Tensor::cat(&keys, 0).index_select(0, &inverse);
            let maps = (!maps.is_empty()).then(|| Tensor::cat(&maps, 0).index_select(0, &inverse));
            (keys, maps)
        })
    }

    /// Writes `keys` (`n×D`) into the queue from column `position` on (wrapping around).
    pub fn enqueue(&self, keys: &Tensor, position: usize) {
        let (n, len) = (keys.size()[0], self.queue_len() as i64);
        tch::no_grad(|| {
            let cols = (Tensor::arange(n, (Kind::Int64, keys.device())) + position as i64).remainder(len);
            let mut queue = self.queue.shallow_clone();
            let _ = queue.index_copy_(1, &cols, &keys.detach().transpose(0, 1).to_kind(queue.kind()));
        });
    }

    /// The query encoder's pooled last-stage features, L2-normalised, in eval mode (what the
    /// k-NN monitor and linear evaluation read).
    pub fn backbone_features(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let last = self.encoder_q.features(x, false, &[]).0;
            normalize_rows(&self.encoder_q.pool(&last))
        })
    }
}

/// Freezes the query encoder's classifier (the variables under `classifier`: `fc.` of a ResNet),
/// which pre-training neither reads nor trains, so that no optimiser built afterwards holds it.
/// (Built before, the momentum side still carries it along: unused either way.)
pub fn freeze_query_classifier(vs: &VarStore, paths: &MocoPaths, classifier: &str) {
    let classifier = format!("{}{classifier}", path_prefix(&paths.query));
    for (name, t) in vs.variables() {
        if name.starts_with(&classifier) {
            let _ = t.set_requires_grad(false);
        }
    }
}

/// Each row divided by its L2 norm (floored at 1e-12, as `F.normalize`).
pub fn normalize_rows(x: &Tensor) -> Tensor {
    let norm = x
        .to_kind(crate::native::compute_kind(x.kind()))
        .norm_scalaropt_dim(2, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    x / norm
}
