//! One self-supervised training step's losses (docs/ALGORITHM.md §6.2, §6.6): MoCo v2 on two views,
//! optionally with mixup — a handcrafted input policy on the query view or across views (the SSL
//! mixup baselines), or SAMix-SSL, whose Mixer reads the key encoder's stage features of the two
//! views and is trained through the frozen key side. One permutation per branch pairs features,
//! images and keys alike: the mixed sample n is built from view 1 of image n and view 2 of image
//! `perm[n]`, and its positives are the *other* views of those two images — view 2 of n and
//! view 1 of `perm[n]` — so no sample is ever matched with a key of the very view it contains.
//! Touches only the networks it holds; the optimiser and the queue's writes belong to the caller.
use super::config::SslConfig;
use super::moco::{Moco, MocoPaths};
use crate::loss::contrastive::{extend_positives, info_nce, mixed_info_nce, pair_info_nce};
use crate::mix::{random_pairing, MixPolicy};
use crate::model::StagedNet;
use crate::native::Precision;
use crate::rng::SamixRng;
use crate::samix::{
    backbone_branch, mixer_branch, ContrastiveLoss, FirstLambda, Mixer, MixerDraws, PairInputs, PosExtend, SamixOptions,
};
use crate::Result;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// What mixes, on top of MoCo v2.
pub enum SslMixing {
    /// MoCo v2 alone.
    None,
    /// A handcrafted policy mixing query views (`cross_view`: view 1 of one image with view 2 of
    /// its partner; the policy must blend its two images by a weight map or a global λ).
    Input { policy: Box<dyn MixPolicy>, cross_view: bool },
    /// SAMix-SSL: a Mixer trained online through the key side.
    Samix(Box<SslSamix>),
}

/// SAMix-SSL's Mixer with its options and λ sampler.
pub struct SslSamix {
    pub mixer: Mixer,
    pub options: SamixOptions,
    pub draws: MixerDraws,
}

/// The random draws of one step made outside the mixing policy (which draws its own).
pub struct SslDraws {
    /// The order in which the key encoder's sub-batches take the keys' images.
    pub key_shuffle: Tensor,
    /// SAMix-SSL: λ and pairing of the backbone branch, of the Mixer branch, and whether the
    /// backbone mask is rescaled this step (`mix.mask_adjust` a probability).
    pub lam_bb: Tensor,
    pub lam_mb: Tensor,
    pub perm_bb: Tensor,
    pub perm_mb: Tensor,
    pub adjust_bb: Tensor,
    /// SAMix-SSL with `pos_extend`: the blend weights `u` of the local term's extended positives
    /// (`N×D`, in [0, 1] or [1, 2]); empty otherwise.
    pub pos_extend: Tensor,
}

/// The loss terms of a step and what the step enqueues.
pub struct SslLosses {
    /// MoCo's InfoNCE of view 1's queries against view 2's keys.
    pub moco: Tensor,
    /// The mixed samples' InfoNCE on the query side (a baseline's, or SAMix's backbone branch).
    pub mix: Option<Tensor>,
    /// SAMix-SSL: the Mixer branch's loss through the key side (trains the Mixer only).
    pub mixer: Option<Tensor>,
    /// SAMix-SSL: the weighted mask regulariser.
    pub mask: Option<Tensor>,
    /// View 2's keys, to enqueue after the optimiser step (`N×D`).
    pub keys: Tensor,
    /// SAMix-SSL: the Mixer branch's mask (with gradient) and the backbone branch's.
    pub s_mb: Option<Tensor>,
    pub s_bb: Option<Tensor>,
}

impl SslLosses {
    /// `moco + w·mix + mixer + mask`, `w` the configured weight of the mixed loss.
    pub fn total(&self, mix_weight: f64) -> Tensor {
        // New tensors at each sum: `+=` would add in place into `moco` itself, which the
        // metrics read afterwards.
        let mut total = self.moco.shallow_clone();
        if let Some(m) = &self.mix {
            total = &total + m * mix_weight;
        }
        for t in [&self.mixer, &self.mask].into_iter().flatten() {
            total = &total + t;
        }
        total
    }

    /// The names of the terms in the metrics log.
    pub const TERMS: [&'static str; 4] = ["loss_moco", "loss_mix", "loss_mixer", "loss_mask"];

    /// The terms this step has, named as [`SslLosses::TERMS`].
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let [moco, mix, mixer, mask] = Self::TERMS;
        let mut out = vec![(moco, &self.moco)];
        for (name, t) in [(mix, &self.mix), (mixer, &self.mixer), (mask, &self.mask)] {
            if let Some(t) = t {
                out.push((name, t));
            }
        }
        out
    }
}

/// MoCo v2 with its mixing.
/// How one self-supervised step runs beyond its two views: the draws, the forward precision,
/// the weight of the mixup terms, and where the step is in the run (the key side's momentum
/// follows its schedule; the queue position follows the step count).
pub struct SslStepPlan<'a> {
    pub draws: &'a SslDraws,
    pub precision: Precision,
    /// Whether autocast keeps its casts of the weights for the step.
    pub cache_casts: bool,
    pub mix_weight: f64,
    /// Steps taken before this one, and the run's length in steps.
    pub step: u64,
    pub total_steps: u64,
    /// Keys enqueued per step over all processes.
    pub global_batch: usize,
}

pub struct SslModel<N> {
    pub moco: Moco<N>,
    pub mixing: SslMixing,
}

impl<N: StagedNet> SslModel<N> {
    /// MoCo from two copies of one backbone (see [`Moco::new`]); for SAMix-SSL, `samix` gives the
    /// options and the Mixer is built under `paths.mixer` for `image_size`-pixel images.
    pub fn new(
        vs: &VarStore,
        paths: &MocoPaths,
        encoders: (N, N),
        cfg: SslConfig,
        queue_len: usize,
        mixing: SslMixingChoice,
        image_size: i64,
    ) -> Result<Self> {
        let moco = Moco::new(vs, paths, encoders.0, encoders.1, cfg, queue_len)?;
        let mixing = match mixing {
            SslMixingChoice::None => SslMixing::None,
            SslMixingChoice::Input { policy, cross_view } => SslMixing::Input { policy, cross_view },
            SslMixingChoice::Samix(options) => {
                options.check(moco.encoder_k.num_stages())?;
                let shape = crate::samix::pretrained::mixer_shape(
                    &moco.encoder_k,
                    options.mask_stage,
                    image_size,
                    vs.device(),
                )?;
                let mixer = Mixer::new(&paths.mixer, &options.mixer, shape);
                SslMixing::Samix(Box::new(SslSamix {
                    draws: MixerDraws::new(options.alpha, options.mask_adjust)?,
                    mixer,
                    options,
                }))
            }
        };
        Ok(SslModel { moco, mixing })
    }

    /// The step's draws for `n` images per view, from the run's seeded host stream.
    pub fn draw(&self, n: usize, rng: &mut SamixRng, device: Device) -> SslDraws {
        let keys = match &self.mixing {
            SslMixing::None => n,
            SslMixing::Input { cross_view, .. } => n * (1 + *cross_view as usize),
            SslMixing::Samix(_) => 2 * n,
        };
        let key_shuffle = random_pairing(keys, rng, device);
        let scalar = |v: f64| Tensor::from(v as f32);
        match &self.mixing {
            SslMixing::Samix(samix) => {
                let d = samix.draws.two_branches(n, rng, device, FirstLambda::BackboneBranch);
                let pos_extend = match samix.options.contrastive_loss.pos_extend() {
                    Some(how) => draw_pos_extend(how, n, self.moco.cfg.feature_dim, rng, device),
                    None => Tensor::zeros([0], (Kind::Float, device)),
                };
                SslDraws {
                    key_shuffle,
                    lam_bb: d.lam_bb,
                    lam_mb: d.lam_mb,
                    perm_bb: d.perm_bb,
                    perm_mb: d.perm_mb,
                    adjust_bb: d.adjust_bb,
                    pos_extend,
                }
            }
            _ => {
                let none = Tensor::zeros([0], (Kind::Int64, device));
                SslDraws {
                    key_shuffle,
                    lam_bb: scalar(1.0),
                    lam_mb: scalar(1.0),
                    perm_bb: none.shallow_clone(),
                    perm_mb: none.shallow_clone(),
                    adjust_bb: scalar(0.0),
                    pos_extend: none.to_kind(Kind::Float),
                }
            }
        }
    }

    /// The loss terms of one step on views `x1`, `x2` (`N×C×H×W` each). An input policy draws
    /// from `rng`. The caller updates the key side's momentum first ([`Moco::momentum_update`])
    /// and enqueues [`SslLosses::keys`] after its optimiser step.
    /// One step on views `x1`, `x2` in the order every caller keeps (§6.2): the key side's
    /// momentum update at the scheduled momentum, the losses (under the plan's precision),
    /// `optimise` — the caller's backward pass of their total and its optimiser's update — then
    /// the keys (all processes' keys, rank-major, from `gather`) into the queue. The trainer and
    /// the bench both run it.
    pub fn step(
        &self,
        (x1, x2): (&Tensor, &Tensor),
        plan: &SslStepPlan,
        rng: &mut SamixRng,
        optimise: impl FnOnce(&Tensor) -> Result<()>,
        gather: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<SslLosses> {
        self.moco.momentum_update(self.moco.cfg.momentum_at(plan.step, plan.total_steps))?;
        let mut losses = crate::native::with_precision(plan.precision, x1.device(), plan.cache_casts, || {
            self.losses(x1, x2, plan.draws, rng)
        })??;
        if let (SslMixing::Samix(samix), Some(mask)) = (&self.mixing, &losses.mask) {
            losses.mask = Some(samix.options.mask_loss.annealed(mask, plan.step, plan.total_steps));
        }
        optimise(&losses.total(plan.mix_weight))?;
        // After the backward pass, which still reads the queue as it was.
        let keys = gather(&losses.keys)?;
        self.moco.enqueue(&keys, self.moco.queue_position(plan.step, plan.global_batch));
        Ok(losses)
    }

    pub fn losses(&self, x1: &Tensor, x2: &Tensor, d: &SslDraws, rng: &mut SamixRng) -> Result<SslLosses> {
        let moco = &self.moco;
        let (queue, tau) = (&moco.queue, moco.cfg.temperature);
        let q = moco.query(x1, true);
        let n = x1.size()[0];
        match &self.mixing {
            SslMixing::None => {
                let k2 = moco.keys(x2, &d.key_shuffle);
                Ok(SslLosses { moco: info_nce(&q, &k2, queue, tau), keys: k2, ..SslLosses::empty(x1) })
            }
            SslMixing::Input { policy, cross_view } => {
                let (k1, k2) = if *cross_view {
                    let k = moco.keys(&Tensor::cat(&[x1, x2], 0), &d.key_shuffle);
                    (Some(k.narrow(0, 0, n)), k.narrow(0, n, n))
                } else {
                    (None, moco.keys(x2, &d.key_shuffle))
                };
                // Each image's index stands in for its label, so the policy's second "label" is
                // the partner's index.
                let index = Tensor::arange(n, (Kind::Int64, x1.device()));
                let mixed = policy.mix(x1, &index, rng);
                let partner = &mixed.targets.y_b;
                let (images, pos_b) = match &k1 {
                    Some(k1) => {
                        let first = match &mixed.first_weight {
                            Some(m) => m.shallow_clone(),
                            None => mixed.targets.lam.view([n, 1, 1, 1]),
                        };
                        (crate::mix::blend(x1, &x2.index_select(0, partner), &first), k1.index_select(0, partner))
                    }
                    None => (mixed.images, k2.index_select(0, partner)),
                };
                let z = moco.query(&images, true);
                let mix = mixed_info_nce(&z, &k2, &pos_b, &mixed.targets.lam, queue, tau);
                Ok(SslLosses { moco: info_nce(&q, &k2, queue, tau), mix: Some(mix), keys: k2, ..SslLosses::empty(x1) })
            }
            SslMixing::Samix(samix) => self.samix_losses(samix, (x1, x2), q, d),
        }
    }

    /// SAMix-SSL's losses: MoCo's, the backbone branch's (the query side learns from the
    /// detached mask) and the Mixer branch's (through the frozen key side, the Mixer learns).
    fn samix_losses(
        &self,
        samix: &SslSamix,
        (x1, x2): (&Tensor, &Tensor),
        q: Tensor,
        d: &SslDraws,
    ) -> Result<SslLosses> {
        let moco = &self.moco;
        let (queue, tau) = (&moco.queue, moco.cfg.temperature);
        let n = x1.size()[0];
        let (mixer, options) = (&samix.mixer, &samix.options);
        let both = Tensor::cat(&[x1, x2], 0);
        let (k, maps) = moco.keys_and_maps(&both, &d.key_shuffle, options.mask_stage)?;
        let (k1, k2) = (k.narrow(0, 0, n), k.narrow(0, n, n));
        let (f1, f2) = (maps.narrow(0, 0, n), maps.narrow(0, n, n));
        let pair = |perm: &Tensor| PairInputs {
            f: f1.shallow_clone(),
            f_pair: f2.index_select(0, perm),
            x: x1.shallow_clone(),
            x_pair: x2.index_select(0, perm),
        };
        // Backbone branch: the detached mask, the query side learns from it.
        let adjust = options.area_adjust(&d.adjust_bb);
        let (s_bb, x_bb) = backbone_branch(mixer, options, &pair(&d.perm_bb), &d.lam_bb, adjust);
        let z_bb = moco.query(&x_bb, true);
        let mix = mixed_info_nce(&z_bb, &k2, &k1.index_select(0, &d.perm_bb), &d.lam_bb, queue, tau);
        // Mixer branch: through the frozen key side, the Mixer learns.
        let (s_mb, mask, x_mb) = mixer_branch(mixer, options, &pair(&d.perm_mb), &d.lam_mb);
        let z_mb = moco.embed_k(&x_mb);
        let pos_b = k1.index_select(0, &d.perm_mb);
        let global = || mixed_info_nce(&z_mb, &k2, &pos_b, &d.lam_mb, queue, tau);
        let local = || pair_info_nce(&z_mb, &k2, &pos_b, &d.lam_mb, tau);
        let mixer_loss = match options.contrastive_loss {
            ContrastiveLoss::Global => global(),
            ContrastiveLoss::Local => local(),
            ContrastiveLoss::LocalGlobal { eta } => local() + global() * eta,
            ContrastiveLoss::GlobalLocal { eta, pos_extend: None } => global() + local() * eta,
            ContrastiveLoss::GlobalLocal { eta, pos_extend: Some(_) } => {
                // Image n's two roles share its row of u: the λ source n's positive blends its
                // view-2 key with its own view 1's; the partner's, its view-1 key with its view 2's.
                let u = &d.pos_extend;
                if u.size() != k1.size() {
                    let msg = format!("SslDraws::pos_extend is {:?}; the keys are {:?}", u.size(), k1.size());
                    return Err(crate::Error::Argument(format!("{msg} (draw with SslModel::draw)")));
                }
                let pos_a = extend_positives(&k2, &k1, u);
                let pos_b = extend_positives(&k1, &k2, u).index_select(0, &d.perm_mb);
                global() + pair_info_nce(&z_mb, &pos_a, &pos_b, &d.lam_mb, tau) * eta
            }
        };
        Ok(SslLosses {
            moco: info_nce(&q, &k2, queue, tau),
            mix: Some(mix),
            mixer: Some(mixer_loss),
            mask: Some(mask),
            keys: k2,
            s_mb: Some(s_mb),
            s_bb: Some(s_bb),
        })
    }
}

impl SslLosses {
    fn empty(like: &Tensor) -> Self {
        SslLosses {
            moco: Tensor::zeros([], (Kind::Float, like.device())),
            mix: None,
            mixer: None,
            mask: None,
            keys: Tensor::zeros([0], (Kind::Float, like.device())),
            s_mb: None,
            s_bb: None,
        }
    }
}

/// What [`SslModel::new`] builds the mixing from.
pub enum SslMixingChoice {
    None,
    Input { policy: Box<dyn MixPolicy>, cross_view: bool },
    Samix(SamixOptions),
}

/// The blend weights of `pos_extend` for `n` images of `dim`-wide keys from the host stream:
/// `u ~ Beta(2, 2)` per element, plus one for extrapolation (`both`: a fair coin per step, drawn
/// first).
fn draw_pos_extend(how: PosExtend, n: usize, dim: i64, rng: &mut SamixRng, device: Device) -> Tensor {
    use rand::Rng;
    use rand_distr::{Beta, Distribution};
    let extrapolate = match how {
        PosExtend::Interpolation => false,
        PosExtend::Extrapolation => true,
        PosExtend::Both => rng.gen::<bool>(),
    };
    let offset = if extrapolate { 1.0 } else { 0.0 };
    // Beta(2, 2) has valid parameters, so `new` cannot fail here; the fallback never runs.
    let beta = Beta::new(2.0f32, 2.0).unwrap_or_else(|_| unreachable!());
    let values: Vec<f32> = (0..n * dim.max(0) as usize).map(|_| beta.sample(rng) + offset).collect();
    Tensor::from_slice(&values).view([n as i64, dim]).to_device(device)
}
