//! `[mix]`: which mixing policy a run names, as one list of the policies and their tables
//! ([`MixConfig`]). Each table's type, defaults, checks and constructor live beside its policy
//! (`crate::mix`, `crate::samix`); this file only lists them and builds one from a name.
use crate::mix::{
    AlignmixConfig, AttentivemixConfig, CutmixConfig, FmixConfig, GridmixConfig, ManifoldmixConfig, MixupConfig,
    MixupCutmixConfig, NoMixConfig, PolicyConfig, PuzzleMixConfig, ResizemixConfig, SaliencymixConfig, SmoothmixConfig,
    TransmixConfig,
};
use crate::samix::{AutomixConfig, MixerVariant, SamixConfig, SamixOptions, SamixPConfig, Scenario};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Declares [`MixConfig`] from one line per policy: the variant, its `[mix]` table (a type kept
/// beside the policy, implementing [`PolicyConfig`]) and its `policy = "..."` name.
macro_rules! mix_policies {
    ($($(#[$doc:meta])* $variant:ident($table:ty) = $name:literal,)+) => {
        /// The mixing policy and its arguments (`[mix] policy = "..."`).
        #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
        #[serde(tag = "policy")]
        pub enum MixConfig {
            $($(#[$doc])* #[serde(rename = $name)] $variant($table),)+
        }

        impl MixConfig {
            /// Every policy's name, in the order listed.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The policy's name as a config writes it (`policy = "..."`).
            pub fn name(&self) -> &'static str {
                match self {
                    $(MixConfig::$variant(_) => $name,)+
                }
            }

            /// Where in a `[mix]` table (below `mix`) it fails to read as its policy's table:
            /// serde's tagged enum reads the table through a buffer and names only `mix`.
            pub fn error_path(table: &toml::Table) -> Option<String> {
                let mut table = table.clone();
                let name = table.remove("policy")?;
                let value = toml::Value::Table(table);
                let path = match name.as_str()? {
                    $($name => serde_path_to_error::deserialize::<_, $table>(value).err()?.path().to_string(),)+
                    _ => return None,
                };
                (path != ".").then_some(path)
            }

            /// The policy's own table: its checks and, for most, its constructor.
            pub fn table(&self) -> &dyn PolicyConfig {
                match self {
                    $(MixConfig::$variant(t) => t,)+
                }
            }
        }
    };
}

mix_policies! {
    None(NoMixConfig) = "none",
    /// Input mixup: λ ~ Beta(α, α), per batch or per sample.
    Mixup(MixupConfig) = "mixup",
    /// Box pasted from the paired image; λ recomputed from the box area.
    Cutmix(CutmixConfig) = "cutmix",
    /// The whole paired image shrunk into a random box (τ from Beta(α, α) within [0.1, 0.8]).
    Resizemix(ResizemixConfig) = "resizemix",
    /// Grid of holes taking the paired image, hole side ratio √(1−λ).
    Gridmix(GridmixConfig) = "gridmix",
    /// Gaussian blob of the paired image; α is not used by the mask (as the reference).
    Smoothmix(SmoothmixConfig) = "smoothmix",
    /// Binarised low-frequency Fourier map: the first image keeps ~λ of the pixels.
    Fmix(FmixConfig) = "fmix",
    /// CutMix box centred on the saliency peak (spectral residual) of one paired image.
    Saliencymix(SaliencymixConfig) = "saliencymix",
    /// Top-λ cells of a frozen classifier's last feature map keep the first image.
    Attentivemix(AttentivemixConfig) = "attentivemix",
    /// PuzzleMix: saliency-guided graph-cut masks over a block grid plus block transport.
    Puzzlemix(PuzzleMixConfig) = "puzzlemix",
    /// timm's MixUp/CutMix combination (per batch, pair or element; partner = flipped batch).
    MixupCutmix(MixupCutmixConfig) = "mixup_cutmix",
    /// Mixes the input or a hidden stage's output (`points`: 0 = input, k = after stage k).
    Manifoldmix(ManifoldmixConfig) = "manifoldmix",
    /// Sinkhorn-aligned interpolation of the last feature maps, or ManifoldMix, by coin flip.
    Alignmix(AlignmixConfig) = "alignmix",
    /// CutMix (or MixUp) with λ re-weighted by a ViT's class-token attention over the box.
    Transmix(TransmixConfig) = "transmix",
    /// Online SAMix: a learnable Mixer trained through an EMA critic (docs/ALGORITHM.md §3).
    Samix(SamixConfig) = "samix",
    /// Online AutoMix: the same training step with AutoMix's Mixer, mask loss and CE critic.
    Automix(AutomixConfig) = "automix",
    /// SAMix-P: the frozen Mixer of a finished SAMix run mixes each batch (docs/ALGORITHM.md §7).
    SamixP(SamixPConfig) = "samix_p",
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig::None(NoMixConfig {})
    }
}

impl MixConfig {
    /// The default α of a policy by name: the reference's CIFAR-100 ResNet-18 value
    /// (docs/ALGORITHM.md §8). The one place these numbers are stated.
    pub fn default_alpha(name: &str) -> f64 {
        match name {
            "mixup" | "resizemix" | "puzzlemix" | "transmix" => 1.0,
            "samix" | "automix" | "samix_p" => SamixOptions::samix().alpha,
            "attentivemix" => 2.0,
            _ => 0.2,
        }
    }

    /// A policy by name with its α (default: [`MixConfig::default_alpha`]), validated as a config
    /// would be. Policies that consult a trained classifier (attentivemix, puzzlemix) need
    /// `checkpoint`, a samix run or checkpoint folder.
    pub fn named(name: &str, alpha: Option<f64>, checkpoint: Option<&Path>) -> Result<MixConfig> {
        let alpha = alpha.unwrap_or_else(|| Self::default_alpha(name));
        let (positive, takes_alpha) = (alpha.is_finite() && alpha > 0.0, !matches!(name, "none" | "mixup_cutmix"));
        if takes_alpha && !positive {
            // Before the policy is looked at: a NaN α once surfaced as a TOML error on `--policy`.
            return Err(Error::config("--alpha", format!("{alpha} is not a positive number")));
        }
        let cfg = match (name, checkpoint) {
            ("attentivemix" | "puzzlemix" | "samix_p", None) => {
                let msg = format!("--policy {name} consults a trained classifier: pass --checkpoint RUN_DIR");
                return Err(Error::Argument(msg));
            }
            // Checked here: the stage count (0) matters only to policies these are not.
            ("attentivemix", Some(c)) => checked(MixConfig::Attentivemix(AttentivemixConfig::new(alpha, c.into())))?,
            ("samix_p", Some(c)) => checked(MixConfig::SamixP(SamixPConfig::new(c.to_path_buf(), alpha)))?,
            _ => {
                let text = match takes_alpha {
                    false => format!("policy = \"{name}\""),
                    true => format!("policy = \"{name}\"\nalpha = {alpha:?}"),
                };
                toml::from_str(&text).map_err(|e| Error::config("--policy", e.message().to_string()))?
            }
        };
        if cfg.online_config().is_some() {
            return Err(Error::config(
                "--policy",
                "samix/automix learn their masks during training; see the run's visuals/",
            ));
        }
        Ok(cfg)
    }

    /// [`MixConfig::named`] for policies that need no classifier.
    pub fn from_name(name: &str, alpha: Option<f64>) -> Result<MixConfig> {
        Self::named(name, alpha, None)
    }

    /// The online-Mixer config and its variant, if this is online SAMix or AutoMix.
    pub fn online_config(&self) -> Option<(&SamixConfig, MixerVariant)> {
        match self {
            MixConfig::Samix(c) => Some((c, MixerVariant::Samix)),
            MixConfig::Automix(c) => Some((c, MixerVariant::Automix)),
            _ => None,
        }
    }

    /// The online-Mixer options for `scenario` with the variant's defaults filled in, if this is
    /// online SAMix or AutoMix.
    pub fn online_mixer(&self, scenario: Scenario) -> Option<SamixOptions> {
        self.online_config().map(|(c, v)| c.resolve(v, scenario))
    }

    /// Online SAMix/AutoMix: writes `scenario`'s defaults into the keys whose default depends on
    /// it (see [`SamixConfig::settle`]).
    pub fn settle(&mut self, scenario: Scenario) {
        match self {
            MixConfig::Samix(c) => c.settle(scenario),
            MixConfig::Automix(c) => c.0.settle(scenario),
            _ => {}
        }
    }

    /// Range checks of the policy's arguments for a backbone with `num_stages` stages.
    pub fn check(&self, num_stages: usize) -> Result<()> {
        self.table().check(num_stages)
    }
}

fn checked(cfg: MixConfig) -> Result<MixConfig> {
    cfg.check(0).map(|()| cfg)
}
