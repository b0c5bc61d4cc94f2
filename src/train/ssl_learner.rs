//! The learner glue of self-supervised pre-training ([`crate::ssl`]): builds MoCo v2 and its
//! mixing over the run's network in samix's layout (`q.*` query encoder and neck, `k.*` their
//! momentum copies, `moco.queue`, `mixer.*`), steps the key side's momentum before each step and
//! the queue after it (keys of every process, under data parallelism), gives a Mixer its own SGD
//! group, sums the loss terms per epoch, evaluates with the weighted k-NN monitor, and writes the
//! query backbone (`backbone.safetensors`, for `model.init_from`) and the mask visuals.
use super::eval::{EvalResult, Evaluation};
use super::learner::{Learner, StepContext};
use super::loss_sums::{EpochSums, LossSums};
use super::mixing::Mixing;
use super::model::seed_init;
use super::samix_learner::sgd_with_mixer_group;
use super::visual::MaskVisuals;
use crate::config::{MixConfig, TrainConfig};
use crate::data::loader::{Batch, Loader};
use crate::data::DatasetInfo;
use crate::dist::ProcessGroup;
use crate::model::{Network, StagedNet};
use crate::native::Precision;
use crate::optim::{CosineSchedule, Optimizer};
use crate::rng::SamixRng;
use crate::samix::ema::path_prefix;
use crate::ssl::moco::freeze_query_classifier;
use crate::ssl::{Bank, MocoPaths, SslConfig, SslDraws, SslLosses, SslMixing, SslMixingChoice, SslModel, SslStepPlan};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The query backbone a pre-training run exports, in samix's network names.
pub const BACKBONE_FILE: &str = "backbone.safetensors";

/// `config` turned into the linear evaluation of a pre-trained backbone (`samix linear`): the
/// classifier trains on the frozen backbone read from `backbone` (a pre-training run folder, its
/// [`BACKBONE_FILE`], or a weights file). Refuses a config with an `[ssl]` table or a missing
/// backbone file.
pub fn linear_evaluation(mut config: TrainConfig, backbone: &Path) -> Result<TrainConfig> {
    if config.ssl.is_some() {
        return Err(Error::Argument(
            "samix linear trains a classifier; its config must not have an [ssl] table".into(),
        ));
    }
    let file = if backbone.is_dir() { backbone.join(BACKBONE_FILE) } else { backbone.to_path_buf() };
    if !file.is_file() {
        return Err(Error::Argument(format!(
            "--backbone: {} is not a file (a finished pre-training run holds backbone.safetensors)",
            file.display()
        )));
    }
    config.model.init_from = Some(file);
    config.train.linear_probe = true;
    config.validate()?;
    Ok(config)
}

pub struct SslLearner {
    pub vs: VarStore,
    pub model: SslModel<Network>,
    sgd: Optimizer,
    lr: CosineSchedule,
    mixer_lr: Option<CosineSchedule>,
    /// The training split without augmentation: the k-NN monitor's memory bank.
    bank: Loader,
    classes: i64,
    group: Option<Arc<ProcessGroup>>,
    global_batch: usize,
    mix_weight: f64,
    precision: Precision,
    visual_every: usize,
    visual: Option<MaskVisuals>,
    sums: LossSums,
    /// SAMix-SSL: the Mixer with the key encoder it reads, left for SAMix-P at the end.
    artifact: Option<crate::samix::artifact::MixerArtifact>,
    seed: u64,
}

impl SslLearner {
    /// `bank` reads the training split in order without augmentation.
    pub fn new(cfg: &TrainConfig, ssl: &SslConfig, info: &DatasetInfo, bank: Loader, device: Device) -> Result<Self> {
        seed_init(cfg.seed);
        let vs = VarStore::new(device);
        let paths = MocoPaths::standard(&vs);
        let (channels, classes) = (info.channels as i64, info.num_classes as i64);
        let encoder_q = Network::new(&paths.query, &cfg.model, channels, classes)?;
        if let Some(path) = &cfg.model.init_from {
            crate::model::interop::init_from(
                &vs,
                &path_prefix(&paths.query),
                cfg.model.arch.classifier_prefix(),
                path,
            )?;
        }
        let encoder_k = Network::new(&paths.key, &cfg.model, channels, classes)?;
        let side = cfg.image_side().unwrap_or(0);
        let mixing =
            Mixing::from_config(&cfg.mix, crate::samix::Scenario::SelfSupervised, info, cfg.image_side(), device)?;
        let (choice, samix_config) = match mixing {
            Mixing::Input(_) if matches!(cfg.mix, MixConfig::None(_)) => (SslMixingChoice::None, None),
            Mixing::Input(policy) => {
                (SslMixingChoice::Input { policy: Box::new(policy), cross_view: ssl.cross_view }, None)
            }
            Mixing::Online { config, options } => (SslMixingChoice::Samix(options), Some(config)),
            Mixing::Feature(_) | Mixing::Saliency(_) => {
                return Err(Error::config("mix.policy", "has no self-supervised form (see [ssl])"));
            }
        };
        // `[ssl]`'s own checks (a config loaded from a file has passed them already), among them
        // a set queue size being a multiple of the batch; the default is one by construction.
        ssl.check(cfg.train.batch_size)?;
        let queue_len = ssl.queue_len(cfg.train.batch_size, bank.dataset().len());
        let model = SslModel::new(&vs, &paths, (encoder_q, encoder_k), ssl.clone(), queue_len, choice, side)?;
        freeze_query_classifier(&vs, &paths, cfg.model.arch.classifier_prefix());
        let artifact = match &model.mixing {
            SslMixing::Samix(s) => Some(crate::samix::artifact::MixerArtifact::describe(
                &cfg.model,
                info,
                side,
                &s.options,
                s.mixer.shape(),
                (path_prefix(&paths.mixer), path_prefix(&paths.key)),
            )),
            _ => None,
        };
        let lr = CosineSchedule::new(cfg.optim.lr, cfg.train.epochs, &cfg.schedule);
        let (sgd, mixer_lr) = match &samix_config {
            Some(sc) => {
                let (sgd, schedule) = sgd_with_mixer_group(&vs, cfg, &sc.mixer_optim, path_prefix(&paths.mixer));
                (sgd, Some(schedule))
            }
            None => (Optimizer::new(&vs, &cfg.optim), None),
        };
        Ok(SslLearner {
            vs,
            model,
            sgd,
            lr,
            mixer_lr,
            bank,
            classes,
            group: None,
            global_batch: cfg.train.batch_size,
            mix_weight: ssl.mix_weight,
            precision: cfg.train.precision,
            visual_every: samix_config.map_or(0, |c| c.visual_every),
            visual: None,
            // The loss terms and, for SAMix-SSL, the masks' distance from λ.
            sums: LossSums::new(&[&SslLosses::TERMS, &crate::samix::mask::AREA_TERMS]),
            artifact,
            seed: cfg.seed,
        })
    }

    /// Fixes the images the mask grids show (SAMix-SSL only).
    pub fn set_visual_batch(&mut self, images: Tensor, mean: Vec<f32>, std: Vec<f32>) {
        if matches!(self.model.mixing, SslMixing::Samix(_)) {
            self.visual = Some(MaskVisuals::new(images, mean, std));
        }
    }

    /// The k-NN memory bank: the query backbone's normalised features of the training split.
    pub fn memory_bank(&self) -> Result<Bank> {
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for batch in self.bank.epoch(0) {
            let batch = batch?;
            features.push(self.model.moco.backbone_features(&batch.images));
            labels.push(batch.labels);
        }
        if features.is_empty() {
            return Err(Error::Argument("the k-NN memory bank is empty (no training images)".into()));
        }
        Ok(Bank { features: Tensor::cat(&features, 0), labels: Tensor::cat(&labels, 0), classes: self.classes })
    }

    /// The query backbone's variables in samix's network names (what `model.init_from` reads).
    pub fn backbone_weights(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter_map(|(n, t)| {
                let key = n.strip_prefix("q.")?;
                (!key.starts_with("neck.")).then(|| (key.to_string(), t.detach()))
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }
    /// One optimisation step on the given draws (what [`Learner::train_step`] runs after drawing
    /// them; an input policy draws from `rng`): the key side's momentum update, the losses, one
    /// backward pass, the SGD step at this step's rates, and the step's keys enqueued (every
    /// process's, under data parallelism). Returns the losses and the backbone's rate. Public so
    /// that a test can replay a step on draws it chose.
    pub fn step_with(
        &mut self,
        batch: &Batch,
        d: &SslDraws,
        ctx: &StepContext,
        rng: &mut SamixRng,
    ) -> Result<(SslLosses, f64)> {
        let size = batch.images.size();
        if size.len() != 5 || size[1] != 2 {
            return Err(Error::Argument(format!("self-supervised training needs two-view batches, got {size:?}")));
        }
        let (x1, x2) = (batch.images.select(1, 0), batch.images.select(1, 1));
        let lr = self.lr.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let mixer_lr = self.mixer_lr.as_ref().map(|m| m.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch));
        let plan = SslStepPlan {
            draws: d,
            precision: self.precision,
            cache_casts: true,
            mix_weight: self.mix_weight,
            step: ctx.global_step,
            total_steps: ctx.total_steps,
            global_batch: self.global_batch,
        };
        let (sgd, group) = (&mut self.sgd, &self.group);
        let optimise = |total: &Tensor| {
            sgd.zero_grad();
            total.backward();
            match mixer_lr {
                Some(m) => sgd.step_groups(&[lr, m]),
                None => sgd.step(lr),
            }
        };
        let gather = |keys: &Tensor| match group {
            // Rank-major: the queue's columns follow the global batch's order.
            Some(g) => Ok(g.all_gather(&keys.to_kind(Kind::Float))?.flatten(0, 1)),
            None => Ok(keys.shallow_clone()),
        };
        let losses = self.model.step((&x1, &x2), &plan, rng, optimise, gather)?;
        Ok((losses, lr))
    }
}

impl Learner for SslLearner {
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

    fn set_group(&mut self, group: Arc<ProcessGroup>) {
        self.group = Some(group);
    }

    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)> {
        let d = self.model.draw(batch.len(), rng, batch.images.device());
        let (losses, lr) = self.step_with(batch, &d, ctx, rng)?;
        let area = match (&losses.s_mb, &losses.s_bb) {
            (Some(s_mb), Some(s_bb)) => Some(crate::samix::mask::area_terms(s_mb, &d.lam_mb, s_bb, &d.lam_bb)),
            _ => None,
        };
        let area_named = area.iter().flatten().map(|(name, t)| (*name, t));
        self.sums.add(losses.named().into_iter().chain(area_named));
        Ok((losses.total(self.mix_weight).detach(), lr))
    }

    fn epoch_progress(&self) -> EpochSums {
        self.sums.progress()
    }

    fn restore_epoch_progress(&mut self, progress: &EpochSums) -> Result<()> {
        self.sums.restore(progress, self.vs.device(), "self-supervised")
    }

    fn epoch_extras(&mut self) -> BTreeMap<String, f64> {
        self.sums.take_means()
    }

    /// The weighted k-NN accuracy of the test images against the training split; its "loss" is
    /// the mean −log of the true class's share of the votes.
    fn evaluate(&self, loader: &Loader) -> Result<Evaluation> {
        let _guard = tch::no_grad_guard();
        let bank = self.memory_bank()?;
        let cfg = &self.model.moco.cfg;
        let (mut top1, mut top5, mut nll, mut n) = (0i64, 0i64, 0f64, 0usize);
        for batch in loader.epoch(0) {
            let batch = batch?;
            let features = self.model.moco.backbone_features(&batch.images);
            let c = bank.count(&features, &batch.labels, cfg.knn_k, cfg.knn_temperature);
            top1 += c.top1.int64_value(&[]);
            top5 += c.top5.int64_value(&[]);
            nll += c.nll.double_value(&[]);
            n += batch.len();
        }
        let denom = n.max(1) as f64;
        let primary = EvalResult {
            acc1: 100.0 * top1 as f64 / denom,
            acc5: 100.0 * top5 as f64 / denom,
            loss: nll / denom,
            images: n,
        };
        let mut heads = BTreeMap::new();
        heads.insert("knn_acc1".to_string(), primary.acc1);
        Ok(Evaluation { primary, heads })
    }

    fn on_epoch_end(&mut self, epoch: usize, total_epochs: usize, out: &Path) -> Result<Vec<PathBuf>> {
        let due = super::visual::snapshot_due(self.visual_every, epoch, total_epochs);
        let (SslMixing::Samix(samix), true, Some(visual)) = (&self.model.mixing, due, self.visual.as_mut()) else {
            return Ok(Vec::new());
        };
        let stage = samix.options.mask_stage;
        let f = tch::no_grad(|| self.model.moco.encoder_k.features(visual.images(), false, &[stage]).1.remove(0));
        let path =
            visual.snapshot_with(|perm, lam| samix.mixer.mask(&f, perm, &Tensor::from(lam), false), epoch, out)?;
        Ok(vec![path])
    }

    fn on_finish(&mut self, out: &Path) -> Result<()> {
        if let Some(v) = &self.visual {
            v.write_evolution(out)?;
        }
        if let Some(artifact) = &self.artifact {
            // The key encoder and its Mixer, as a SAMix run leaves its EMA encoder and Mixer: a
            // SAMix-SSL run can feed SAMix-P (`policy = "samix_p"`, `mixer = RUN`).
            artifact.save_for_run(&self.vs, out, self.seed)?;
        }
        crate::files::write_safetensors_atomic(&out.join(BACKBONE_FILE), self.backbone_weights())
    }
}
