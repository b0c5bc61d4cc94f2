//! The Mixer artifact a SAMix run leaves (`mixer.safetensors` + `mixer.json`): the Mixer and the
//! EMA encoder it reads, with what is needed to reuse them frozen (SAMix-P). Writes files only.
use super::mixer::{MixerConfig, MixerShape};
use crate::files::{write_json_atomic, write_safetensors_atomic};
use crate::model::ModelConfig;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::VarStore;

pub const WEIGHTS_FILE: &str = "mixer.safetensors";
pub const METADATA_FILE: &str = "mixer.json";

/// What `mixer.json` says about a saved Mixer, so it can be reused frozen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MixerArtifact {
    pub backbone: ModelConfig,
    pub in_channels: i64,
    pub num_classes: i64,
    pub image_size: i64,
    pub mask_stage: usize,
    pub mixer: MixerConfig,
    pub shape: MixerShape,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Variables in `mixer.safetensors`: `mixer.*` (the Mixer) and `k.*` (the EMA encoder with
    /// its heads and BN statistics).
    pub prefixes: Vec<String>,
}

impl MixerArtifact {
    /// Writes the variables of `vs` under this artifact's prefixes and the metadata into `dir`,
    /// each file atomically.
    pub fn save(&self, vs: &VarStore, dir: &Path) -> Result<()> {
        let vars = vs.variables().into_iter().filter(|(n, _)| self.prefixes.iter().any(|p| n.starts_with(p.as_str())));
        write_safetensors_atomic(&dir.join(WEIGHTS_FILE), vars)?;
        write_json_atomic(&dir.join(METADATA_FILE), self)
    }
}
