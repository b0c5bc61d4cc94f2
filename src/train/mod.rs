//! Training runs: the learners that plug into the common loop (a handcrafted policy, online
//! SAMix, self-supervised pre-training), the [`Learner`] trait they implement, and the run itself
//! in parts — [`run`] (start to end), [`epoch`] (one epoch's steps and evaluation), [`resume`]
//! (where a run starts), [`replicas`] (one process or a data-parallel group, alike to the loop),
//! [`stop`] (stopping from outside). Owns the run directory; reads data only through the loader.
pub mod checkpoint;
mod epoch;
pub mod eval;
pub mod loaders;
pub mod metrics;
pub mod mixing;
pub mod model;
pub mod monitor;
mod replicas;
mod resume;
pub mod run;
pub mod run_dir;
pub mod samix_learner;
pub mod ssl_learner;
mod stop;
pub mod supervised;
pub mod visual;

pub use loaders::{eval_loader, train_loader, train_pipeline};
pub use mixing::{input_policy, Mixing, Policy};
pub use model::{seed_init, Model};
pub use monitor::Progress;
pub use run::{run, RunOptions};
pub use samix_learner::SamixLearner;
pub use ssl_learner::SslLearner;
pub use stop::StopSignal;
pub use supervised::SupervisedLearner;

use crate::config::TrainConfig;
use crate::data::loader::{Batch, Loader};
use crate::data::{Dataset, DatasetInfo};
use crate::dist::ProcessGroup;
use crate::optim::Sgd;
use crate::rng::SamixRng;
use crate::{Error, Result};
use checkpoint::EpochSums;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Where a training step is in the run.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    pub epoch: usize,
    pub iter: usize,
    pub iters_per_epoch: usize,
    /// Steps taken before this one, over the whole run.
    pub global_step: u64,
    pub total_steps: u64,
}

/// What the common loop needs from a way of training (handcrafted policy, online SAMix).
pub trait Learner {
    fn var_store(&self) -> &VarStore;
    fn var_store_mut(&mut self) -> &mut VarStore;
    fn optimizer(&self) -> &Sgd;
    fn optimizer_mut(&mut self) -> &mut Sgd;
    /// One optimisation step; returns the detached scalar loss (on the device) and the
    /// backbone's learning rate.
    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)>;
    fn evaluate(&self, loader: &Loader) -> Result<eval::Evaluation>;
    /// Extra per-epoch figures for `metrics.jsonl` (loss components); resets them.
    fn epoch_extras(&mut self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    /// The sums behind [`Learner::epoch_extras`] so far, for a checkpoint taken mid-epoch.
    fn epoch_progress(&self) -> EpochSums {
        EpochSums::default()
    }
    /// Restores what [`Learner::epoch_progress`] returned (an epoch resumed mid-way).
    fn restore_epoch_progress(&mut self, _progress: &EpochSums) -> Result<()> {
        Ok(())
    }
    /// After an epoch's evaluation; returns the pictures it wrote (recorded with the metrics).
    fn on_epoch_end(&mut self, _epoch: usize, _total_epochs: usize, _out: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
    fn on_finish(&mut self, _out: &Path) -> Result<()> {
        Ok(())
    }
    /// The process group of a data-parallel run, for learners whose step talks to the other
    /// processes itself (the key queue of self-supervised training).
    fn set_group(&mut self, _group: Arc<ProcessGroup>) {}
}

/// The learner a config names, for the training split `train` described by `info`. An online
/// Mixer's visuals show the first images of `test_loader`; self-supervised training's k-NN
/// monitor reads `train` without augmentation.
pub fn build_learner(
    config: &TrainConfig,
    info: &DatasetInfo,
    train: &Arc<dyn Dataset>,
    test_loader: &Loader,
    device: Device,
) -> Result<Box<dyn Learner>> {
    let visual_batch = || -> Result<Option<Tensor>> {
        Ok(match test_loader.epoch(0).next() {
            Some(first) => {
                let first = first?;
                Some(first.images.narrow(0, 0, first.len().min(8) as i64))
            }
            None => None,
        })
    };
    if let Some(ssl) = &config.ssl {
        let bank = eval_loader(config, train.clone(), device);
        let mut learner = SslLearner::new(config, ssl, info, bank, device)?;
        if let Some(images) = visual_batch()? {
            learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
        }
        return Ok(Box::new(learner));
    }
    match Mixing::from_config(&config.mix, info, config.image_side(), device)? {
        Mixing::Online { config: samix_config, options } => {
            let side =
                config.image_side().ok_or_else(|| Error::config("data.augment.image_size", "needed for SAMix"))?;
            let mut learner = SamixLearner::new(config, &samix_config, options, info, side, device)?;
            if let Some(images) = visual_batch()? {
                learner.set_visual_batch(images, info.mean.clone(), info.std.clone());
            }
            Ok(Box::new(learner))
        }
        mixing => Ok(Box::new(SupervisedLearner::with_mixing(config, info, device, mixing)?)),
    }
}
