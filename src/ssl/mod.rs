//! Self-supervised pre-training (docs/ALGORITHM.md §5.5, §6): MoCo v2 ([`Moco`]: query and momentum
//! encoders with their necks, the key queue), its mixup variants ([`SslModel`]: the handcrafted
//! baselines and SAMix-SSL, which reuses the supervised Mixer branch and mask post-processing of
//! [`crate::samix`]), the contrastive losses of [`crate::loss::contrastive`], and the weighted
//! k-NN monitor ([`knn`]). Touches only the networks it is given; the optimiser, the schedules and
//! run files belong to the training loop.
pub mod config;
pub mod knn;
pub mod moco;
pub mod step;

pub use config::SslConfig;
pub use knn::Bank;
pub use moco::{normalize_rows, Moco, MocoNeck, MocoPaths};
pub use step::{SslDraws, SslLosses, SslMixing, SslMixingChoice, SslModel, SslSamix, SslStepPlan};
