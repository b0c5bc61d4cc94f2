//! samix: mixup-augmented training of image classifiers on tch/libtorch, built around SAMix
//! (Scenario-Agnostic Mixup, arXiv 2111.15454).
//!
//! Data flows one way: [`data`] (datasets, transforms, loader) → [`mix`] (mixing policies) →
//! [`model`] → [`loss`] → [`train`] (optimizer, schedules, checkpoints, metrics).
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod host;
pub mod loss;
pub mod mix;
pub mod mixer;
pub mod report;
pub mod model;
pub mod native;
pub mod rng;
pub mod train;

pub use error::{Error, Result};
