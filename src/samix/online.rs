//! Online SAMix / AutoMix for supervised learning (docs/ALGORITHM.md §3), generic over the backbone:
//! an online network with a second (`mix`) head, its EMA copy (frozen: the critic), and the
//! Mixer. One step draws two λ and two pairings, trains the Mixer through the EMA critic (Mixer
//! branch), trains the online network on clean images and on the detached learned masks
//! (backbone branch); the caller then steps its optimiser and [`OnlineSamix::ema_update`]s.
//! Touches only these networks; the optimiser, schedules and files belong to the caller.
use super::branches::{backbone_branch, mixer_branch, PairInputs};
use super::config::SamixOptions;
use super::draws::{Draws, FirstLambda, MixerDraws};
use super::ema::Ema;
use super::mixer::Mixer;
use crate::loss::{cross_entropy, mixup_cross_entropy};
use crate::mix::mix_targets_t;
use crate::model::{LinearHead, StagedNet};
use crate::native::Precision;
use crate::rng::SamixRng;
use crate::Result;
use tch::nn::{self, VarStore};
use tch::{Device, Tensor};

/// Names of the four predictors [`OnlineSamix::head_logits`] returns, in its order: the EMA
/// network's classifier (what a run deploys), the EMA mix head, the online classifier, the online
/// mix head.
pub const HEADS: [&str; 4] = ["one_k", "mix_k", "one_q", "mix_q"];

/// The name of the mix head each network carries beside its classifier (`q.head_mix.*`,
/// `k.head_mix.*`); it is no part of the classifier a run deploys.
pub const MIX_HEAD: &str = "head_mix";

/// Where the parts of online SAMix live in a VarStore.
pub struct SamixPaths<'a> {
    pub online: nn::Path<'a>,
    pub ema: nn::Path<'a>,
    pub mixer: nn::Path<'a>,
}

impl<'a> SamixPaths<'a> {
    /// samix's own layout: `q.*` online, `k.*` EMA, `mixer.*` (what run checkpoints hold).
    pub fn standard(vs: &'a VarStore) -> Self {
        let root = vs.root();
        SamixPaths { online: &root / "q", ema: &root / "k", mixer: &root / "mixer" }
    }
}

/// How one step runs beyond its batch: the draws, label smoothing, the forward precision, and
/// where the step is in the run (the EMA momentum follows its schedule over the run's steps).
pub struct StepPlan<'a> {
    pub draws: &'a Draws,
    pub smoothing: f64,
    pub precision: Precision,
    /// Whether autocast keeps its casts of the weights for the step (off for CUDA-graph capture).
    pub cache_casts: bool,
    /// Steps taken before this one, and the run's length in steps.
    pub step: u64,
    pub total_steps: u64,
}

/// The four loss terms of a step; their sum is what one optimiser step minimises.
pub struct SamixLosses {
    /// CE of the online network on clean images (trains the online network and its classifier).
    pub one_q: Tensor,
    /// Mixup CE of the online network on backbone-branch images (online network, mix head).
    pub mix_q: Tensor,
    /// Mixer-branch loss through the frozen EMA critic (trains the Mixer only).
    pub mix_k: Tensor,
    /// Weighted mask regulariser (trains the Mixer only).
    pub mask: Tensor,
    /// The Mixer-branch mask (with gradient to the Mixer).
    pub s_mb: Tensor,
    /// The detached, post-processed backbone-branch mask.
    pub s_bb: Tensor,
}

impl SamixLosses {
    pub fn total(&self) -> Tensor {
        &self.one_q + &self.mix_q + &self.mix_k + &self.mask
    }
}

/// Online SAMix over a backbone `N`: the networks and the step's losses.
pub struct OnlineSamix<N> {
    pub online: N,
    pub online_mix_head: LinearHead,
    /// The EMA copy of `online`: frozen, the critic of the Mixer branch and the deployed network.
    pub ema: N,
    pub ema_mix_head: LinearHead,
    pub mixer: Mixer,
    pub options: SamixOptions,
    draws: MixerDraws,
    ema_params: Ema,
}

impl<N: StagedNet> OnlineSamix<N> {
    /// Takes two copies of one backbone that the caller built under `paths.online` and
    /// `paths.ema` of `vs` (in that order, so the weight-init draws are the same for every
    /// caller), adds the mix heads and the Mixer (in that order), and makes the EMA copy equal to
    /// the online one and frozen. `image_size` is the side of the (square) training images.
    pub fn new(
        vs: &VarStore,
        paths: &SamixPaths,
        online: N,
        ema: N,
        options: SamixOptions,
        image_size: i64,
    ) -> Result<Self> {
        let stages = online.stage_channels();
        options.check(stages.len())?;
        let last = *stages.last().unwrap_or(&1);
        let classes = online.num_classes();
        let online_mix_head = LinearHead::new(&(&paths.online / MIX_HEAD), last, classes);
        let ema_mix_head = LinearHead::new(&(&paths.ema / MIX_HEAD), last, classes);
        let stage = options.mask_stage;
        // The upsampling factor is whatever maps the Mixer's feature map back onto the image.
        let shape = super::pretrained::mixer_shape(&online, stage, image_size, vs.device())?;
        let mixer = Mixer::new(&paths.mixer, &options.mixer, shape);
        let ema_params = Ema::new(vs, &paths.online, &paths.ema)?;
        Ok(OnlineSamix {
            draws: MixerDraws::new(options.alpha, options.mask_adjust)?,
            online,
            online_mix_head,
            ema,
            ema_mix_head,
            mixer,
            options,
            ema_params,
        })
    }

    /// `p_ema ← m·p_ema + (1 − m)·p_online` over parameters; call after each optimiser step.
    pub fn ema_update(&self, momentum: f64) -> Result<()> {
        self.ema_params.update(momentum)
    }

    /// The EMA momentum before step `step` of `total` under the configured schedule.
    pub fn ema_momentum(&self, step: u64, total: u64) -> f64 {
        self.options.ema.momentum_at(step, total)
    }

    /// The draws of a step from a seeded host stream (what training uses: reproducible and
    /// independent of the device).
    pub fn draw(&self, n: usize, rng: &mut SamixRng, device: Device) -> Draws {
        self.draws.two_branches(n, rng, device, FirstLambda::MixerBranch)
    }

    /// The same draws made on `device` by libtorch's generator (for CUDA-graph capture).
    pub fn draw_on_device(&self, n: usize, device: Device) -> Draws {
        self.draws.two_branches_on_device(n, device)
    }

    /// The EMA network's stage features the Mixer reads. The EMA encoder runs in train mode, as
    /// the reference's: its BN uses batch statistics and keeps its own running statistics.
    pub fn mixer_features(&self, x: &Tensor, train: bool) -> Tensor {
        tch::no_grad(|| self.ema.features(x, train, &[self.options.mask_stage]).1.remove(0))
    }

    /// The loss terms of one step on a batch `x` with labels `y` (§3 steps 3–10).
    pub fn losses(&self, x: &Tensor, y: &Tensor, d: &Draws, smoothing: f64) -> SamixLosses {
        let o = &self.options;
        let f = self.mixer_features(x, true);
        let pair_mb = PairInputs::permuted(&f, x, &d.perm_mb);
        let (s_mb, mask, x_mb) = mixer_branch(&self.mixer, o, &pair_mb, &d.lam_mb);
        let adjust = o.area_adjust(&d.adjust_bb);
        let pair_bb = PairInputs::permuted(&f, x, &d.perm_bb);
        let (s_bb, x_bb) = backbone_branch(&self.mixer, o, &pair_bb, &d.lam_bb, adjust);
        let (t_mb, t_bb) = (mix_targets_t(y, &d.perm_mb, &d.lam_mb), mix_targets_t(y, &d.perm_bb, &d.lam_bb));
        let z_k = self.ema_mix_head.classify(&self.ema.pool(&self.ema.features(&x_mb, true, &[]).0));
        let mix_k = o.mixer_loss.compute(&z_k, &t_mb);
        let one_q = cross_entropy(&self.online.forward_stages(x, true, &[]).0, y, smoothing);
        let z_mix = self.online_mix_head.classify(&self.online.pool(&self.online.features(&x_bb, true, &[]).0));
        let mix_q = mixup_cross_entropy(&z_mix, &t_bb, smoothing);
        SamixLosses { one_q, mix_q, mix_k, mask, s_mb, s_bb }
    }

    /// One training step on a batch `x` with labels `y`, in the order every caller keeps
    /// (§3): the four losses (under the plan's precision), `optimise` — the caller's backward
    /// pass of their total and its optimiser's update — then the EMA update at the momentum the
    /// schedule gives this step. The trainer, the bench and a user's own loop all run it.
    pub fn step(
        &self,
        x: &Tensor,
        y: &Tensor,
        plan: &StepPlan,
        optimise: impl FnOnce(&Tensor) -> Result<()>,
    ) -> Result<SamixLosses> {
        let momentum = self.ema_momentum(plan.step, plan.total_steps);
        let mut losses = crate::native::with_precision(plan.precision, x.device(), plan.cache_casts, || {
            self.losses(x, y, plan.draws, plan.smoothing)
        })?;
        losses.mask = self.options.mask_loss.annealed(&losses.mask, plan.step, plan.total_steps);
        optimise(&losses.total())?;
        self.ema_update(momentum)?;
        Ok(losses)
    }

    /// Logits of the four predictors of [`HEADS`] (eval mode).
    pub fn head_logits(&self, x: &Tensor) -> Vec<Tensor> {
        let pk = self.ema.pool(&self.ema.features(x, false, &[]).0);
        let pq = self.online.pool(&self.online.features(x, false, &[]).0);
        let (k, q) = (&self.ema_mix_head, &self.online_mix_head);
        vec![self.ema.classifier(&pk), k.classify(&pk), self.online.classifier(&pq), q.classify(&pq)]
    }
}
