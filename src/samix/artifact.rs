//! The Mixer artifact a SAMix run leaves (`mixer.safetensors` + `mixer.json`): the Mixer and the
//! EMA encoder it reads, with what is needed to reuse them frozen (SAMix-P). Writes files only.
use super::mixer::{MixerConfig, MixerShape};
use crate::files::{write_json_atomic, write_safetensors_atomic};
use crate::model::ModelConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::nn::VarStore;

pub const WEIGHTS_FILE: &str = "mixer.safetensors";
pub const METADATA_FILE: &str = "mixer.json";

/// What `mixer.json` says about a saved Mixer, so it can be reused frozen ([`super::PretrainedMixer`]).
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
    /// Name prefix of the Mixer's variables.
    #[serde(default = "MixerArtifact::default_mixer_prefix")]
    pub mixer_prefix: String,
    /// Name prefix of the encoder's variables.
    #[serde(default = "MixerArtifact::default_encoder_prefix")]
    pub encoder_prefix: String,
    /// Which run made it: its directory and the samix version (absent in artifacts written before
    /// this was recorded).
    #[serde(default)]
    pub produced_by: Option<Provenance>,
}

/// Where an artifact came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub run_dir: String,
    pub samix_version: String,
    pub seed: u64,
}

impl MixerArtifact {
    fn default_mixer_prefix() -> String {
        "mixer.".into()
    }
    fn default_encoder_prefix() -> String {
        "k.".into()
    }

    /// Reads `mixer.json` from `dir` (a SAMix run folder, or any folder holding the two files).
    pub fn read(dir: &Path) -> Result<MixerArtifact> {
        let path = dir.join(METADATA_FILE);
        if !path.is_file() {
            let msg = format!("no {METADATA_FILE} here: not a finished SAMix run or a Mixer artifact folder");
            return Err(Error::run(dir, msg));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::data(&path, e.to_string()))
    }

    /// The artifact of a Mixer of `options` reading the encoder under `encoder_prefix` (a
    /// `backbone` network for `info`'s images of `image_size` pixels), the Mixer's variables under
    /// `mixer_prefix`: what a SAMix or SAMix-SSL run leaves for SAMix-P.
    pub fn describe(
        backbone: &ModelConfig,
        info: &crate::data::DatasetInfo,
        image_size: i64,
        options: &super::SamixOptions,
        shape: MixerShape,
        (mixer_prefix, encoder_prefix): (String, String),
    ) -> MixerArtifact {
        MixerArtifact {
            backbone: backbone.clone(),
            in_channels: info.channels as i64,
            num_classes: info.num_classes as i64,
            image_size,
            mask_stage: options.mask_stage,
            mixer: options.mixer.clone(),
            shape,
            mean: info.mean.clone(),
            std: info.std.clone(),
            prefixes: vec![mixer_prefix.clone(), encoder_prefix.clone()],
            mixer_prefix,
            encoder_prefix,
            produced_by: None,
        }
    }

    /// [`MixerArtifact::save`] into the run folder `dir`, recording the run (its folder, seed and
    /// the samix version).
    pub fn save_for_run(&self, vs: &VarStore, dir: &Path, seed: u64) -> Result<()> {
        let mut artifact = self.clone();
        artifact.produced_by = Some(Provenance {
            run_dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).display().to_string(),
            samix_version: env!("CARGO_PKG_VERSION").into(),
            seed,
        });
        artifact.save(vs, dir)
    }

    /// Writes the variables of `vs` under this artifact's prefixes and the metadata into `dir`,
    /// each file atomically.
    pub fn save(&self, vs: &VarStore, dir: &Path) -> Result<()> {
        let vars = vs.variables().into_iter().filter(|(n, _)| self.prefixes.iter().any(|p| n.starts_with(p.as_str())));
        write_safetensors_atomic(&dir.join(WEIGHTS_FILE), vars)?;
        write_json_atomic(&dir.join(METADATA_FILE), self)
    }
}
