//! What the common training loop needs from a way of training: the [`Learner`] trait, and where
//! a step is in the run ([`StepContext`]). Touches nothing.
use super::eval;
use super::loss_sums::EpochSums;
use crate::data::loader::{Batch, Loader};
use crate::dist::ProcessGroup;
use crate::optim::Optimizer;
use crate::rng::SamixRng;
use crate::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::nn::VarStore;
use tch::Tensor;

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
    fn optimizer(&self) -> &Optimizer;
    fn optimizer_mut(&mut self) -> &mut Optimizer;
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
