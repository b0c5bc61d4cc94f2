//! Supervised training with a handcrafted mixing policy (input, feature-level or PuzzleMix) and
//! the mixup cross-entropy: one model, one SGD, one schedule.
use super::eval::{self, Evaluation};
use super::learner::{Learner, StepContext};
use super::mixing::Mixing;
use super::model::Model;
use crate::config::TrainConfig;
use crate::data::loader::{Batch, Loader};
use crate::data::DatasetInfo;
use crate::loss::{mixup_binary_cross_entropy, mixup_cross_entropy, ClassLoss};
use crate::mix::{input_saliency, MixPolicy};
use crate::native::Precision;
use crate::optim::{CosineSchedule, Optimizer};
use crate::rng::SamixRng;
use crate::{Error, Result};
use std::collections::BTreeMap;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Tensor};

/// Training with a handcrafted mixing policy and mixup CE.
pub struct SupervisedLearner {
    model: Model,
    mixing: Mixing,
    sgd: Optimizer,
    schedule: CosineSchedule,
    smoothing: f64,
    loss: ClassLoss,
    bce_threshold: Option<f64>,
    precision: Precision,
    /// Whether the training forward runs in train mode: not in linear evaluation (the frozen
    /// backbone keeps its BN statistics) unless `train.probe_bn = "train"`.
    train_mode: bool,
    /// SAMix-P's reference route: a cross-entropy on the clean images beside the mixup loss.
    clean_loss: bool,
}

impl SupervisedLearner {
    pub fn new(cfg: &TrainConfig, info: &DatasetInfo, device: Device) -> Result<Self> {
        let mixing = Mixing::from_config(&cfg.mix, crate::samix::Scenario::Supervised, info, cfg.image_side(), device)?;
        Self::with_mixing(cfg, info, device, mixing)
    }

    /// The learner for a mixing already built (not online SAMix, which has its own learner).
    pub fn with_mixing(cfg: &TrainConfig, info: &DatasetInfo, device: Device, mixing: Mixing) -> Result<Self> {
        if let Mixing::Online { .. } = mixing {
            return Err(Error::config("mix.policy", "online SAMix/AutoMix run through SamixLearner"));
        }
        if cfg.train.probe_bn == crate::config::ProbeBn::Train && !cfg.train.linear_probe {
            // Checked here, not when the file is read: a linear-evaluation config is complete
            // only once `samix linear` sets the backbone and the probe.
            let msg = "applies to linear evaluation only (samix linear, or train.linear_probe)";
            return Err(Error::config("train.probe_bn", msg));
        }
        let model = Model::build(cfg, info, device)?;
        if cfg.train.linear_probe {
            // Before the optimiser is built, so it holds the classifier's parameters only.
            for (name, t) in model.vs.variables() {
                if !name.starts_with(cfg.model.arch.classifier_prefix()) {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        let sgd = Optimizer::new(&model.vs, &cfg.optim);
        let schedule = CosineSchedule::new(cfg.optim.lr, cfg.train.epochs, &cfg.schedule);
        Ok(SupervisedLearner {
            model,
            mixing,
            sgd,
            schedule,
            smoothing: cfg.train.label_smoothing,
            loss: cfg.train.loss,
            bce_threshold: cfg.train.bce_threshold,
            precision: cfg.train.precision,
            train_mode: !cfg.train.linear_probe || cfg.train.probe_bn == crate::config::ProbeBn::Train,
            clean_loss: matches!(&cfg.mix, crate::config::MixConfig::SamixP(c) if c.reference_route),
        })
    }

    /// The mixed forward pass and its loss.
    fn loss(&self, batch: &Batch, rng: &mut SamixRng) -> Result<Tensor> {
        let net = &self.model.net;
        // A frozen backbone keeps its BN statistics (eval mode) unless `probe_bn = "train"`; the
        // linear head has no mode.
        let train = self.train_mode;
        let (logits, targets) = match &self.mixing {
            Mixing::Input(policy) => {
                let mixed = policy.mix(&batch.images, &batch.labels, rng);
                (net.forward_t(&mixed.images, train), mixed.targets)
            }
            Mixing::Feature(f) => {
                let out = f.forward(net, &batch.images, &batch.labels, train, rng)?;
                (out.logits, out.targets)
            }
            Mixing::Saliency(p) => {
                let saliency = input_saliency(net, &batch.images, &batch.labels);
                let mixed = p.mix_with_saliency(&batch.images, &batch.labels, &saliency, rng);
                (net.forward_t(&mixed.images, train), mixed.targets)
            }
            Mixing::Online { .. } => {
                return Err(Error::config("mix.policy", "online SAMix/AutoMix run through SamixLearner"))
            }
        };
        let loss = match self.loss {
            ClassLoss::Ce => mixup_cross_entropy(&logits, &targets, self.smoothing),
            ClassLoss::Bce => mixup_binary_cross_entropy(&logits, &targets, self.smoothing, self.bce_threshold),
        };
        if !self.clean_loss {
            return Ok(loss);
        }
        let clean = net.forward_t(&batch.images, train);
        Ok(loss + clean.cross_entropy_for_logits(&batch.labels))
    }
}

impl Learner for SupervisedLearner {
    fn var_store(&self) -> &VarStore {
        &self.model.vs
    }
    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.model.vs
    }
    fn optimizer(&self) -> &Optimizer {
        &self.sgd
    }
    fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.sgd
    }
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)> {
        let lr = self.schedule.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let loss =
            crate::native::with_precision(self.precision, batch.images.device(), true, || self.loss(batch, rng))??;
        self.sgd.zero_grad();
        loss.backward();
        self.sgd.step(lr)?;
        Ok((loss.detach(), lr))
    }
    fn evaluate(&self, loader: &Loader) -> Result<Evaluation> {
        let r = eval::evaluate(&self.model.net, loader)?;
        Ok(Evaluation { primary: r, heads: BTreeMap::new() })
    }
}
