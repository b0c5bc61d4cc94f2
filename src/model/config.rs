//! The `[model]` table of a run: architecture, stem, width and depth overrides.
use crate::limits::{check_size, check_sizes, MAX_BLOCKS_PER_STAGE, MAX_WIDTH};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
    Resnext50_32x4d,
    Wrn28_8,
}

impl Arch {
    /// Residual stages of the architecture (ResNets 4, WRN 3).
    pub fn num_stages(self) -> usize {
        match self {
            Arch::Wrn28_8 => 3,
            _ => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 3×3 conv, stride 1, no max-pool (32×32 and 64×64 inputs).
    #[default]
    Cifar,
    /// 7×7 conv stride 2 + 3×3 max-pool (224×224 inputs).
    Imagenet,
}

/// The normalisation layers of a network (`model.norm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm (the architectures' own): statistics of each (per-process) batch.
    #[default]
    Batch,
    /// GroupNorm: statistics of each image's channel groups, so the result does not depend on
    /// the batch or on how data-parallel processes split it (small per-GPU batches).
    Group,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    #[serde(default)]
    pub stem: Stem,
    /// Channels of the first stage (ResNet default 64; WRN default 16 before widening). Smaller
    /// values give tiny models for tests and quick runs.
    #[serde(default)]
    pub base_width: Option<i64>,
    /// Residual blocks per stage, overriding the architecture's own.
    #[serde(default)]
    pub blocks: Option<Vec<usize>>,
    #[serde(default)]
    pub norm: NormKind,
    /// GroupNorm's groups: each layer of `c` channels uses the largest divisor of `c` not above
    /// this (32 as in Wu & He, 2018).
    #[serde(default = "default_norm_groups")]
    pub norm_groups: i64,
    /// Start from these weights (a samix weights file; `samix convert` writes one from a
    /// torchvision or timm ResNet), all but the classifier, which starts fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
}

fn default_norm_groups() -> i64 {
    32
}

impl ModelConfig {
    /// `arch` with its own stem default, width and depth.
    pub fn new(arch: Arch) -> Self {
        ModelConfig {
            arch,
            stem: Stem::default(),
            base_width: None,
            blocks: None,
            norm: NormKind::Batch,
            norm_groups: default_norm_groups(),
            init_from: None,
        }
    }

    /// Range checks of this table; errors name the key. How big the network these make is checked
    /// with the data and the batch ([`crate::model::size::check`]).
    pub fn check(&self) -> Result<()> {
        if self.norm_groups < 1 {
            return Err(Error::config("model.norm_groups", "must be at least 1"));
        }
        if self.base_width.is_some_and(|w| w < 1) {
            return Err(Error::config("model.base_width", "must be at least 1"));
        }
        if let Some(blocks) = &self.blocks {
            let stages = self.arch.num_stages();
            if blocks.len() != stages || blocks.iter().any(|&b| b < 1) {
                return Err(Error::config("model.blocks", format!("must list {stages} positive block counts")));
            }
            check_sizes("model.blocks", blocks, MAX_BLOCKS_PER_STAGE)?;
        }
        if let Some(w) = self.base_width {
            check_size("model.base_width", w, MAX_WIDTH)?;
        }
        Ok(())
    }
}
