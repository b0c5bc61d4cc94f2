//! The learner glue of online SAMix / AutoMix: builds [`OnlineSamix`] over the run's network in
//! samix's VarStore layout (`q.*`, `k.*`, `mixer.*`), gives the Mixer its own SGD group and
//! schedule, steps the EMA, sums the loss terms per epoch, evaluates the four heads, and writes
//! the mask visuals and the Mixer artifact into the run directory.
use super::eval::{self, Evaluation};
use super::learner::{Learner, StepContext};
use super::loss_sums::{EpochSums, LossSums};
use super::model::seed_init;
use super::visual::MaskVisuals;
use crate::config::TrainConfig;
use crate::data::loader::{Batch, Loader};
use crate::data::DatasetInfo;
use crate::model::Network;
use crate::native::Precision;
use crate::optim::{CosineSchedule, Optimizer, ParamGroup};
use crate::rng::SamixRng;
use crate::samix::ema::path_prefix;
use crate::samix::{
    Draws, MixerArtifact, MixerOptimConfig, OnlineSamix, SamixConfig, SamixLosses, SamixOptions, SamixPaths, StepPlan,
    HEADS,
};
use crate::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// The loss terms summed per epoch for `metrics.jsonl`.
const LOSS_TERMS: [&str; 4] = ["loss_one_q", "loss_mix_q", "loss_mix_k", "loss_mask"];

/// SGD over every trainable variable of `vs` with the run's `[optim]`, the Mixer's variables
/// (under `mixer_prefix`) in their own group with `[mix.mixer_optim]`, and the Mixer's schedule
/// (online SAMix, supervised or self-supervised).
pub(super) fn sgd_with_mixer_group(
    vs: &VarStore,
    cfg: &TrainConfig,
    mixer: &MixerOptimConfig,
    mixer_prefix: String,
) -> (Optimizer, CosineSchedule) {
    let mixer_optim = mixer.optim(&cfg.optim);
    let schedule = CosineSchedule::new(mixer_optim.lr, cfg.train.epochs, &mixer.schedule(&cfg.optim, &cfg.schedule));
    let group = ParamGroup { prefix: mixer_prefix, cfg: mixer_optim };
    (Optimizer::with_groups(vs, &cfg.optim, &[group]), schedule)
}

/// The SAMix learner plugged into the common training loop.
pub struct SamixLearner {
    pub vs: VarStore,
    pub samix: OnlineSamix<Network>,
    visual_every: usize,
    seed: u64,
    sgd: Optimizer,
    backbone_lr: CosineSchedule,
    mixer_lr: CosineSchedule,
    smoothing: f64,
    precision: Precision,
    sums: LossSums,
    visual: Option<MaskVisuals>,
    artifact: MixerArtifact,
}

impl SamixLearner {
    /// `config` is the run's `[mix]` table, `options` the same with the variant's defaults.
    pub fn new(
        cfg: &TrainConfig,
        config: &SamixConfig,
        options: SamixOptions,
        info: &DatasetInfo,
        image_size: i64,
        device: Device,
    ) -> Result<Self> {
        seed_init(cfg.seed);
        let vs = VarStore::new(device);
        let paths = SamixPaths::standard(&vs);
        let (channels, classes) = (info.channels as i64, info.num_classes as i64);
        let online = Network::new(&paths.online, &cfg.model, channels, classes)?;
        if let Some(path) = &cfg.model.init_from {
            // Before the EMA copy is made from the online network, so both start there.
            crate::model::interop::init_from(
                &vs,
                &path_prefix(&paths.online),
                cfg.model.arch.classifier_prefix(),
                path,
            )?;
        }
        let ema = Network::new(&paths.ema, &cfg.model, channels, classes)?;
        let samix = OnlineSamix::new(&vs, &paths, online, ema, options, image_size)?;
        let (sgd, mixer_lr) = sgd_with_mixer_group(&vs, cfg, &config.mixer_optim, path_prefix(&paths.mixer));
        let backbone_lr = CosineSchedule::new(cfg.optim.lr, cfg.train.epochs, &cfg.schedule);
        let artifact = MixerArtifact::describe(
            &cfg.model,
            info,
            image_size,
            &samix.options,
            samix.mixer.shape(),
            (path_prefix(&paths.mixer), path_prefix(&paths.ema)),
        );
        Ok(SamixLearner {
            vs,
            samix,
            visual_every: config.visual_every,
            seed: cfg.seed,
            sgd,
            backbone_lr,
            mixer_lr,
            smoothing: cfg.train.label_smoothing,
            precision: cfg.train.precision,
            // The loss terms and the masks' distance from λ.
            sums: LossSums::new(&[&LOSS_TERMS, &crate::samix::mask::AREA_TERMS]),
            visual: None,
            artifact,
        })
    }

    /// Fixes the images the mask grids show (a few test images, normalised as for training).
    pub fn set_visual_batch(&mut self, images: Tensor, mean: Vec<f32>, std: Vec<f32>) {
        self.visual = Some(MaskVisuals::new(images, mean, std));
    }

    /// Saves the Mixer with its EMA encoder as a standalone artifact, recording the run.
    pub fn save_mixer(&self, dir: &Path) -> Result<()> {
        self.artifact.save_for_run(&self.vs, dir, self.seed)
    }
    /// One optimisation step on the given draws (what [`Learner::train_step`] runs after drawing
    /// them): the four losses, one backward pass, the SGD step of both groups at this step's
    /// rates, the EMA update. Returns the losses (with both masks) and the backbone's rate. Public
    /// so that a test can replay a step on draws it chose (the PyTorch parity oracle).
    pub fn step_with(&mut self, batch: &Batch, d: &Draws, ctx: &StepContext) -> Result<(SamixLosses, f64)> {
        let lr = self.backbone_lr.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let mixer_lr = self.mixer_lr.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let plan = StepPlan {
            draws: d,
            smoothing: self.smoothing,
            precision: self.precision,
            cache_casts: true,
            step: ctx.global_step,
            total_steps: ctx.total_steps,
        };
        let sgd = &mut self.sgd;
        let losses = self.samix.step(&batch.images, &batch.labels, &plan, |total| {
            sgd.zero_grad();
            total.backward();
            sgd.step_groups(&[lr, mixer_lr])
        })?;
        Ok((losses, lr))
    }
}

impl Learner for SamixLearner {
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }
    fn optimizer(&self) -> &Optimizer {
        &self.sgd
    }
    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.sgd
    }

    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)> {
        let d = self.samix.draw(batch.len(), rng, batch.images.device());
        let (losses, lr) = self.step_with(batch, &d, ctx)?;
        let area = crate::samix::mask::area_terms(&losses.s_mb, &d.lam_mb, &losses.s_bb, &d.lam_bb);
        let terms = LOSS_TERMS.into_iter().zip([&losses.one_q, &losses.mix_q, &losses.mix_k, &losses.mask]);
        self.sums.add(terms.chain(area.iter().map(|(name, t)| (*name, t))));
        Ok((losses.total().detach(), lr))
    }

    fn epoch_progress(&self) -> EpochSums {
        self.sums.progress()
    }

    fn restore_epoch_progress(&mut self, progress: &EpochSums) -> Result<()> {
        self.sums.restore(progress, self.vs.device(), "SAMix")
    }

    fn epoch_extras(&mut self) -> BTreeMap<String, f64> {
        self.sums.take_means()
    }

    fn evaluate(&self, loader: &Loader) -> Result<Evaluation> {
        let results = eval::evaluate_heads(loader, HEADS.len(), |x| self.samix.head_logits(x))?;
        let mut heads = BTreeMap::new();
        for (name, r) in HEADS.iter().zip(&results) {
            heads.insert(super::metrics::head_key(name), r.acc1);
            heads.insert(format!("acc5_{name}"), r.acc5);
        }
        Ok(Evaluation { primary: results[0], heads })
    }

    fn on_epoch_end(&mut self, epoch: usize, total_epochs: usize, out: &Path) -> Result<Vec<PathBuf>> {
        let due = super::visual::snapshot_due(self.visual_every, epoch, total_epochs);
        match (due, self.visual.as_mut()) {
            (true, Some(v)) => Ok(vec![v.snapshot(&self.samix, epoch, out)?]),
            _ => Ok(Vec::new()),
        }
    }

    fn on_finish(&mut self, out: &Path) -> Result<()> {
        if let Some(v) = &self.visual {
            v.write_evolution(out)?;
        }
        self.save_mixer(out)
    }
}
