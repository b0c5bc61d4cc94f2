//! Training runs: the learners that plug into the common loop (a handcrafted policy, online
//! SAMix, self-supervised pre-training), the [`Learner`] trait they implement ([`learner`]; the
//! one a config names: [`build_learner`]), and the run itself
//! in parts — [`run`] (start to end), [`epoch`] (one epoch's steps and evaluation), [`resume`]
//! (where a run starts), [`replicas`] (one process or a data-parallel group, alike to the loop),
//! [`stop`] (stopping from outside). Owns the run directory; reads data only through the loader.
mod build;
pub mod checkpoint;
mod epoch;
pub mod eval;
mod learner;
pub mod loaders;
pub mod loss_sums;
pub mod metrics;
pub mod mixing;
pub mod model;
pub mod monitor;
mod replicas;
mod resume;
pub mod run;
pub mod run_dir;
pub mod run_lock;
pub mod samix_learner;
pub mod ssl_learner;
mod state_file;
mod stop;
pub mod supervised;
pub mod visual;

pub use build::build_learner;
pub use learner::{Learner, StepContext};
pub use loaders::{eval_loader, train_loader, train_pipeline};
pub use mixing::{attentive_mix, input_policy, Mixing, Policy};
pub use model::{seed_init, Model};
pub use monitor::Progress;
pub use resume::check_resumable;
pub use run::{run, RunOptions};
pub use samix_learner::SamixLearner;
pub use ssl_learner::SslLearner;
pub use stop::StopSignal;
pub use supervised::SupervisedLearner;
