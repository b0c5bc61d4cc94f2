//! samix: mixup-augmented training of image classifiers on tch/libtorch, built around SAMix
//! (Scenario-Agnostic Mixup, arXiv 2111.15454).
//!
//! Data flows one way through the modules, and each imports only from those before it:
//! [`data`] (datasets, transforms, loader) → [`model`] (staged networks) → [`mix`] (handcrafted
//! policies) → [`loss`] → [`optim`] (SGD, schedule) → [`samix`] (the Mixer and the online SAMix
//! step) → [`pictures`] (grids, charts) / [`tensorboard`] (event files) → [`config`] (the run
//! recipe) → [`train`] (learners, the epoch loop, checkpoints) → [`preview`] / [`predict`] /
//! [`report`] (runs side by side) / [`bench`] → the `samix` binary. Below them all: [`error`],
//! [`rng`], [`device`], [`native`] (libtorch calls tch lacks), [`dist`] (c10d process groups for
//! data-parallel training), `files` (atomic writes, validated safetensors reads, internal),
//! [`host`] and [`limits`] (the size policy: every user-sized quantity's upper limit).
//!
//! In your own tch training loop: any handcrafted policy is a [`MixPolicy`]; online SAMix is an
//! [`OnlineSamix`] over any [`StagedNet`] (see `examples/samix_loop.rs`); [`mixup_cross_entropy`]
//! and [`Optimizer`] are the loss and optimiser the trainer uses.
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub(crate) mod files;
pub mod host;
pub mod limits;
pub mod loss;
pub mod mix;
pub mod model;
pub mod native;
pub mod optim;
pub mod pictures;
pub mod predict;
pub mod preview;
pub mod report;
pub mod rng;
pub mod samix;
pub mod ssl;
pub mod tensorboard;
pub mod train;

pub use config::{MixConfig, TrainConfig};
pub use data::{DataConfig, DatasetInfo};
pub use error::{Error, Result};
/// The validated safetensors reader every weights file goes through (public for the fuzz target).
pub use files::read_safetensors;
pub use loss::{cross_entropy, mixup_cross_entropy, MixupLoss};
pub use mix::{LambdaSampler, MixPolicy, MixedBatch, MixedTargets};
pub use model::{ModelConfig, Network, StagedNet};
pub use optim::{CosineSchedule, OptimConfig, Optimizer};
pub use rng::{stream, SamixRng, Stream};
pub use samix::{
    Mixer, MixerConfig, OnlineSamix, PretrainedMixer, SamixLosses, SamixOptions, SamixP, SamixPaths, StepPlan,
};
pub use train::{run, Policy, RunOptions};
