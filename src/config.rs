//! The run recipe: one TOML file (`TrainConfig`) naming the data, the model, the optimiser and its
//! schedule, the mixing, and the training loop's own settings (`[train]`), with strict keys (an
//! unknown key is an error naming it), dotted `--set key=value` overrides, and the cross-field
//! checks. Each table's type and defaults live beside what it configures (`data`, `model`,
//! `optim`, `mix`, `samix`); this module only puts them together and decides which mixing a
//! run names.
use crate::data::DataConfig;
use crate::limits::{check_seconds, check_size, MAX_BATCH, MAX_EPOCHS, MAX_IMAGE_SIDE, MAX_ITERATIONS};
use crate::mix::{LambdaMode, MixupCutmix, PuzzleMixConfig};
use crate::model::ModelConfig;
use crate::native::Precision;
use crate::optim::{OptimConfig, ScheduleConfig};
use crate::samix::{MixerVariant, SamixConfig, SamixOptions};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The mixing policy and its arguments (`[mix] policy = "..."`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum MixConfig {
    #[default]
    None,
    /// Input mixup: λ ~ Beta(α, α), per batch or per sample.
    Mixup {
        alpha: f64,
        #[serde(default)]
        per_sample: bool,
    },
    /// Box pasted from the paired image; λ recomputed from the box area.
    Cutmix {
        alpha: f64,
        /// Redraw a pairing that pairs an image with itself (up to 10 times), as the reference.
        #[serde(default)]
        no_repeat: bool,
    },
    /// The whole paired image shrunk into a random box (τ from Beta(α, α) within [0.1, 0.8]).
    Resizemix { alpha: f64 },
    /// Grid of holes taking the paired image, hole side ratio √(1−λ).
    Gridmix {
        alpha: f64,
        /// The reference's crop: unclamped, at a possibly negative offset, holes written with
        /// Python's slicing (see `mix::reference_grid_mask`).
        #[serde(default)]
        reference: bool,
    },
    /// Gaussian blob of the paired image; α is not used by the mask (as the reference).
    Smoothmix {
        alpha: f64,
        /// The reference's label weight (the blob's mean, the partner's share, for the first
        /// label) and blob centre (half a pixel off a pixel's centre).
        #[serde(default)]
        reference: bool,
    },
    /// Binarised low-frequency Fourier mask keeping ~λ of the first image.
    Fmix {
        alpha: f64,
        #[serde(default = "fmix_decay")]
        decay_power: f64,
        /// Redraw a pairing that pairs an image with itself (up to 10 times), as the reference.
        #[serde(default)]
        no_repeat: bool,
    },
    /// CutMix box centred on the saliency peak (spectral residual) of one paired image.
    Saliencymix { alpha: f64 },
    /// Top-λ cells of a frozen classifier's last feature map keep the first image.
    Attentivemix {
        alpha: f64,
        /// The scoring classifier: a samix run or checkpoint folder (its EMA classifier for SAMix
        /// runs), or a samix weights file such as `samix convert` makes from torchvision's
        /// ImageNet ResNet-18 (the reference's scorer; architecture from `scorer_arch` and
        /// `scorer_stem`).
        checkpoint: PathBuf,
        /// Resize the batch to this side before scoring (the reference: 224 for an ImageNet net).
        #[serde(default)]
        upsample_to: Option<usize>,
        /// A weights file's architecture (default resnet18).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scorer_arch: Option<crate::model::Arch>,
        /// A weights file's stem (default imagenet).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scorer_stem: Option<crate::model::Stem>,
    },
    /// PuzzleMix: saliency-guided graph-cut masks over a block grid plus block transport.
    Puzzlemix(PuzzleMixConfig),
    /// timm's MixUp/CutMix combination (per batch, pair or element; partner = flipped batch).
    MixupCutmix {
        #[serde(default = "timm_mixup_alpha")]
        mixup_alpha: f64,
        #[serde(default = "one_f")]
        cutmix_alpha: f64,
        #[serde(default = "one_f")]
        prob: f64,
        #[serde(default = "half")]
        switch_prob: f64,
        #[serde(default)]
        mode: LambdaMode,
    },
    /// Mixes the input or a hidden stage's output (`points`: 0 = input, k = after stage k).
    Manifoldmix {
        alpha: f64,
        #[serde(default = "manifold_points")]
        points: Vec<usize>,
    },
    /// Sinkhorn-aligned interpolation of the last feature maps; with `alternate_manifold` (the
    /// reference's CIFAR setting) each step is ManifoldMix or AlignMix with probability ½.
    Alignmix {
        alpha: f64,
        #[serde(default = "tenth_f")]
        epsilon: f64,
        #[serde(default = "hundred")]
        sinkhorn_iterations: usize,
        #[serde(default = "yes")]
        alternate_manifold: bool,
    },
    /// Online SAMix: a learnable Mixer trained through an EMA critic (docs/ALGORITHM.md §3).
    Samix(SamixConfig),
    /// Online AutoMix: the same training step with AutoMix's Mixer, mask loss and CE critic.
    Automix(SamixConfig),
    /// SAMix-P: the frozen Mixer (and the encoder it reads) of a finished SAMix run mixes each
    /// batch (docs/ALGORITHM.md §7).
    SamixP {
        /// The SAMix run folder, or a folder with its `mixer.json` and `mixer.safetensors`.
        mixer: PathBuf,
        #[serde(default = "samix_alpha")]
        alpha: f64,
        /// Probability of rescaling a mask to cover exactly λ.
        #[serde(default)]
        mask_adjust: f64,
        /// λ or 1−λ at most this gives plain mixup.
        #[serde(default = "samix_lam_margin")]
        lam_margin: f64,
    },
}

fn timm_mixup_alpha() -> f64 {
    0.8
}
fn one_f() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn manifold_points() -> Vec<usize> {
    vec![0, 1, 2]
}
fn hundred() -> usize {
    100
}
fn fmix_decay() -> f64 {
    3.0
}
fn tenth_f() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}
fn samix_alpha() -> f64 {
    SamixOptions::samix().alpha
}
fn samix_lam_margin() -> f64 {
    SamixOptions::samix().lam_margin
}

impl MixConfig {
    /// The default α of a policy by name: the reference's CIFAR-100 ResNet-18 value
    /// (docs/ALGORITHM.md §8). The one place these numbers are stated.
    pub fn default_alpha(name: &str) -> f64 {
        match name {
            "mixup" | "resizemix" | "puzzlemix" => 1.0,
            "samix" | "automix" | "samix_p" => samix_alpha(),
            "attentivemix" => 2.0,
            _ => 0.2,
        }
    }

    /// The ManifoldMix mixing points AlignMix alternates with (input, after stages 1 and 2).
    pub fn default_manifold_points() -> Vec<usize> {
        manifold_points()
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
        match (name, checkpoint) {
            ("attentivemix" | "puzzlemix" | "samix_p", None) => {
                let msg = format!("--policy {name} consults a trained classifier: pass --checkpoint RUN_DIR");
                return Err(Error::Argument(msg));
            }
            ("attentivemix", Some(c)) => {
                let cfg = MixConfig::Attentivemix {
                    alpha,
                    checkpoint: c.to_path_buf(),
                    upsample_to: None,
                    scorer_arch: None,
                    scorer_stem: None,
                };
                cfg.check(0)?;
                return Ok(cfg);
            }
            ("samix_p", Some(c)) => {
                let cfg = MixConfig::SamixP {
                    mixer: c.to_path_buf(),
                    alpha,
                    mask_adjust: 0.0,
                    lam_margin: samix_lam_margin(),
                };
                cfg.check(0)?;
                return Ok(cfg);
            }
            _ => {}
        }
        let text = match name {
            "none" | "mixup_cutmix" => format!("policy = \"{name}\""),
            _ => format!("policy = \"{name}\"\nalpha = {alpha:?}"),
        };
        let cfg: MixConfig = toml::from_str(&text).map_err(|e| Error::config("--policy", e.message().to_string()))?;
        match &cfg {
            MixConfig::Samix(_) | MixConfig::Automix(_) => {
                return Err(Error::config(
                    "--policy",
                    "samix/automix learn their masks during training; see the run's visuals/",
                ))
            }
            MixConfig::None => {}
            _ if !(alpha.is_finite() && alpha > 0.0) => {
                return Err(Error::config("--alpha", format!("{alpha} is not a positive number")))
            }
            _ => {}
        }
        Ok(cfg)
    }

    /// [`MixConfig::named`] for policies that need no classifier.
    pub fn from_name(name: &str, alpha: Option<f64>) -> Result<MixConfig> {
        Self::named(name, alpha, None)
    }

    /// The policy's name as a config writes it (`policy = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            MixConfig::None => "none",
            MixConfig::Mixup { .. } => "mixup",
            MixConfig::Cutmix { .. } => "cutmix",
            MixConfig::Resizemix { .. } => "resizemix",
            MixConfig::Gridmix { .. } => "gridmix",
            MixConfig::Smoothmix { .. } => "smoothmix",
            MixConfig::Fmix { .. } => "fmix",
            MixConfig::Saliencymix { .. } => "saliencymix",
            MixConfig::Attentivemix { .. } => "attentivemix",
            MixConfig::Puzzlemix(_) => "puzzlemix",
            MixConfig::MixupCutmix { .. } => "mixup_cutmix",
            MixConfig::Manifoldmix { .. } => "manifoldmix",
            MixConfig::Alignmix { .. } => "alignmix",
            MixConfig::Samix(_) => "samix",
            MixConfig::Automix(_) => "automix",
            MixConfig::SamixP { .. } => "samix_p",
        }
    }

    /// The online-Mixer config and its variant, if this is online SAMix or AutoMix.
    pub fn online_config(&self) -> Option<(&SamixConfig, MixerVariant)> {
        match self {
            MixConfig::Samix(c) => Some((c, MixerVariant::Samix)),
            MixConfig::Automix(c) => Some((c, MixerVariant::Automix)),
            _ => None,
        }
    }

    /// The online-Mixer options with the variant's defaults filled in, if this is one.
    pub fn online_mixer(&self) -> Option<SamixOptions> {
        self.online_config().map(|(c, v)| c.resolve(v))
    }

    /// Range checks of the policy's arguments for a backbone with `num_stages` stages.
    pub fn check(&self, num_stages: usize) -> Result<()> {
        let positive_alpha = |alpha: f64| {
            if alpha.is_finite() && alpha > 0.0 {
                Ok(())
            } else {
                Err(Error::config("mix.alpha", "must be a positive number (Beta(α, α))"))
            }
        };
        match self {
            MixConfig::None => Ok(()),
            MixConfig::Puzzlemix(p) => p.check(),
            MixConfig::MixupCutmix { mixup_alpha, cutmix_alpha, prob, switch_prob, mode } => {
                MixupCutmix::new(*mixup_alpha, *cutmix_alpha, *prob, *switch_prob, *mode).map(|_| ())
            }
            MixConfig::Manifoldmix { alpha, points } => {
                positive_alpha(*alpha)?;
                if points.is_empty() || points.iter().any(|&p| p >= num_stages) {
                    return Err(Error::config(
                        "mix.points",
                        format!("must list mixing points in 0..{num_stages} (0 = input, k = after stage k)"),
                    ));
                }
                Ok(())
            }
            MixConfig::Mixup { alpha, .. }
            | MixConfig::Cutmix { alpha, .. }
            | MixConfig::Resizemix { alpha }
            | MixConfig::Gridmix { alpha, .. }
            | MixConfig::Smoothmix { alpha, .. }
            | MixConfig::Fmix { alpha, .. }
            | MixConfig::Saliencymix { alpha } => positive_alpha(*alpha),
            MixConfig::Attentivemix { alpha, upsample_to, .. } => {
                upsample_to.map_or(Ok(()), |s| check_size("mix.upsample_to", s, MAX_IMAGE_SIDE))?;
                positive_alpha(*alpha)
            }
            MixConfig::Alignmix { alpha, sinkhorn_iterations, .. } => {
                check_size("mix.sinkhorn_iterations", *sinkhorn_iterations, MAX_ITERATIONS)?;
                positive_alpha(*alpha)
            }
            MixConfig::Samix(c) => c.check(MixerVariant::Samix, num_stages),
            MixConfig::Automix(c) => c.check(MixerVariant::Automix, num_stages),
            MixConfig::SamixP { alpha, mask_adjust, lam_margin, .. } => {
                positive_alpha(*alpha)?;
                if !(0.0..=1.0).contains(mask_adjust) {
                    return Err(Error::config("mix.mask_adjust", "is a probability in [0, 1]"));
                }
                crate::samix::config::check_lam_margin(*lam_margin)
            }
        }
    }
}

/// The training loop's own settings (`[train]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub epochs: usize,
    #[serde(default = "RunConfig::default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Save a checkpoint every N epochs (the last epoch always).
    #[serde(default = "RunConfig::default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// How many epochs of test accuracy the run summary takes the median over (reference: 10).
    #[serde(default = "RunConfig::default_median_of_last")]
    pub median_of_last: usize,
    /// libtorch intra-op threads on CPU (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
    /// `f32`, or `bf16`: the training forward passes and losses under bf16 autocast
    /// (parameters, gradients, optimiser state and evaluation stay f32).
    #[serde(default)]
    pub precision: Precision,
    /// Convolution weights and training batches in channels-last (NHWC) memory order, which
    /// oneDNN and cuDNN run faster (checkpoints are written in the usual layout either way).
    #[serde(default)]
    pub channels_last: bool,
    /// Linear evaluation: the backbone frozen in eval mode (pre-trained through
    /// `model.init_from`, or random as a baseline), only the classifier trained.
    #[serde(default)]
    pub linear_probe: bool,
}

impl RunConfig {
    fn default_batch_size() -> usize {
        100
    }
    fn default_checkpoint_every() -> usize {
        1
    }
    fn default_median_of_last() -> usize {
        10
    }

    /// `epochs` with every other key at its default.
    pub fn new(epochs: usize) -> Self {
        RunConfig {
            epochs,
            batch_size: Self::default_batch_size(),
            eval_batch_size: None,
            label_smoothing: 0.0,
            checkpoint_every: Self::default_checkpoint_every(),
            median_of_last: Self::default_median_of_last(),
            threads: 0,
            precision: Precision::default(),
            channels_last: false,
            linear_probe: false,
        }
    }

    pub fn check(&self) -> Result<()> {
        let fail = |key: &str, msg: &str| Err(Error::config(format!("train.{key}"), msg));
        if self.epochs < 1 {
            return fail("epochs", "must be at least 1");
        }
        if self.batch_size < 1 {
            return fail("batch_size", "must be at least 1");
        }
        check_size("train.epochs", self.epochs, MAX_EPOCHS)?;
        check_size("train.batch_size", self.batch_size, MAX_BATCH)?;
        self.eval_batch_size.map_or(Ok(()), |b| check_size("train.eval_batch_size", b, MAX_BATCH))?;
        if self.eval_batch_size.is_some_and(|b| b < 1) {
            return fail("eval_batch_size", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail("label_smoothing", "must be in [0, 1)");
        }
        if self.checkpoint_every < 1 {
            return fail("checkpoint_every", "must be at least 1");
        }
        if self.median_of_last < 1 {
            return fail("median_of_last", "must be at least 1");
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.threads > 4 * cores {
            return Err(Error::config(
                "train.threads",
                format!("{} is more than 4× this machine's {cores} cores (0 = libtorch's default)", self.threads),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub mix: MixConfig,
    pub train: RunConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// How data-parallel processes talk (read only under a multi-process launch).
    #[serde(default)]
    pub dist: crate::dist::DistConfig,
    /// Self-supervised pre-training (MoCo v2; `[mix]` then names its mixup). Absent: supervised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl: Option<crate::ssl::SslConfig>,
}

/// What a run records besides `metrics.jsonl` and checkpoints (`[log]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// TensorBoard event files in `<run>/tensorboard/`: per-step loss and learning rate, per-epoch
    /// metrics, and the SAMix mask grids as images.
    pub tensorboard: bool,
    /// Without a terminal (logs, CI, batch jobs), a progress line at most this often (seconds);
    /// on a terminal a progress bar is drawn instead.
    pub progress_every_s: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { tensorboard: true, progress_every_s: 30.0 }
    }
}

impl LogConfig {
    pub fn check(&self) -> Result<()> {
        if !(self.progress_every_s.is_finite() && self.progress_every_s >= 0.0) {
            return Err(Error::config("log.progress_every_s", "must be a number of seconds >= 0"));
        }
        check_seconds("log.progress_every_s", self.progress_every_s)?;
        Ok(())
    }
}

impl TrainConfig {
    /// Reads a TOML file, applies `key.path=value` overrides, and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, overrides).map_err(|e| match e {
            Error::ConfigFile { msg, .. } => Error::ConfigFile { path: path.to_path_buf(), msg },
            Error::Config { key, msg } => {
                Error::ConfigFile { path: path.to_path_buf(), msg: format!("key `{key}`: {msg}") }
            }
            other => other,
        })
    }

    pub fn parse(text: &str, overrides: &[String]) -> Result<TrainConfig> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| Error::ConfigFile { path: PathBuf::new(), msg: e.to_string() })?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let checked = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                // toml appends "in `table`" on a second line; the key path already says where.
                let msg = e.into_inner().to_string();
                let msg = msg.lines().next().unwrap_or("").to_string();
                Error::config(if key == "." { "(top level)".into() } else { key }, msg)
            })
            .and_then(|cfg: TrainConfig| cfg.validate().map(|()| cfg));
        checked.map_err(|e| blame_override(e, overrides))
    }

    /// The resolved config as TOML (what a run directory's `config.toml` holds).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::serialize("config.toml", e))
    }

    /// The resolved config as a TOML table without `keys`: a top-level key or table (`seed`,
    /// `log`) or a key inside a table (`data.path`). For comparing configs up to keys that do
    /// not matter to the comparison.
    pub fn table_without(&self, keys: &[&str]) -> Result<toml::Table> {
        let mut table: toml::Table =
            toml::from_str(&self.to_toml()?).map_err(|e| Error::serialize("config.toml", e))?;
        for key in keys {
            match key.split_once('.') {
                Some((section, name)) => {
                    if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                        t.remove(name);
                    }
                }
                None => {
                    table.remove(*key);
                }
            }
        }
        Ok(table)
    }

    /// Every table's own checks, then the checks across tables.
    pub fn validate(&self) -> Result<()> {
        self.train.check()?;
        self.optim.check("optim")?;
        self.schedule.check(self.optim.lr, self.train.epochs)?;
        self.mix.check(self.model.arch.num_stages())?;
        self.log.check()?;
        self.dist.check()?;
        self.model.check()?;
        self.data.check()?;
        if let Some(ssl) = &self.ssl {
            self.check_ssl(ssl)?;
        }
        self.check_network_size()?;
        if self.train.linear_probe && self.mix.online_config().is_some() {
            return Err(Error::config(
                "train.linear_probe",
                "trains a classifier on a frozen backbone; it cannot train a Mixer online (mix.policy)",
            ));
        }
        if self.train.linear_probe && self.model.init_from.is_none() {
            // It would freeze a randomly initialised network and report its probe as a result.
            return Err(Error::config(
                "train.linear_probe",
                "freezes the backbone, so it needs one to freeze: set model.init_from (samix linear --backbone does)",
            ));
        }
        Ok(())
    }

    /// The network these keys build, with its SSL neck, within the parameter limit, and its
    /// largest activation for the larger of the training and evaluation batches within the
    /// tensor limit (crate::limits).
    fn check_network_size(&self) -> Result<()> {
        let neck = self.ssl.as_ref().map(|s| s.neck_parameters(crate::model::size::feature_channels(&self.model)));
        let (batch, key) = match self.train.eval_batch_size {
            Some(e) if e > self.train.batch_size => (e, "train.eval_batch_size"),
            _ => (self.train.batch_size, "train.batch_size"),
        };
        // Image folders without an image_size are refused by data.check().
        let side = self.image_side().unwrap_or(1).max(1) as u64;
        crate::model::size::check(&self.model, neck, side, batch as u64, key)
    }

    /// What self-supervised pre-training can run: MoCo v2 with no mixing, an input policy (across
    /// views only where it blends its two images in place), or online SAMix/AutoMix.
    fn check_ssl(&self, ssl: &crate::ssl::SslConfig) -> Result<()> {
        ssl.check(self.train.batch_size)?;
        if self.train.linear_probe {
            return Err(Error::config(
                "train.linear_probe",
                "is for evaluating a backbone, not for pre-training ([ssl])",
            ));
        }
        // Settings pre-training would accept and not use: refused rather than ignored.
        if self.train.channels_last {
            return Err(Error::config("train.channels_last", "is not supported with [ssl] (two-view batches are 5-D)"));
        }
        if self.train.label_smoothing != 0.0 {
            return Err(Error::config("train.label_smoothing", "has no meaning without labels ([ssl])"));
        }
        if let Some((c, _)) = self.mix.online_config() {
            if c.mixer_loss.is_some() {
                return Err(Error::config(
                    "mix.mixer_loss",
                    "is the supervised Mixer loss; under [ssl] set ssl.mixer_loss and ssl.eta",
                ));
            }
            if c.ema != crate::samix::EmaConfig::default() {
                return Err(Error::config(
                    "mix.ema",
                    "is the supervised EMA critic's schedule; under [ssl] the key side follows ssl.momentum",
                ));
            }
            if ssl.cross_view {
                return Err(Error::config(
                    "ssl.cross_view",
                    "is for input policies; SAMix-SSL always pairs view 1 with the partner's view 2",
                ));
            }
        }
        match &self.mix {
            MixConfig::Manifoldmix { .. } | MixConfig::Alignmix { .. } | MixConfig::Puzzlemix(_) => {
                Err(Error::config("mix.policy", "manifoldmix/alignmix/puzzlemix mix through a classifier; self-supervised pre-training supports none, the input policies and samix/automix"))
            }
            MixConfig::Resizemix { .. } if ssl.cross_view => Err(Error::config(
                "ssl.cross_view",
                "resizemix pastes a resized copy of the partner, which has no cross-view form; use it on the query view",
            )),
            MixConfig::None if ssl.cross_view => {
                Err(Error::config("ssl.cross_view", "has no effect without a mixing policy ([mix] policy)"))
            }
            MixConfig::Samix(_) | MixConfig::Automix(_) if self.image_side().is_none() => {
                Err(Error::config("data.augment.image_size", "needed for samix"))
            }
            _ => Ok(()),
        }
    }

    /// The side of the (square) images the model sees.
    pub fn image_side(&self) -> Option<i64> {
        self.data.image_side()
    }
}

/// A key error caused by a `--set` names that `--set`, not the config file: the error is at the
/// key it set or inside it, or at a table above it and about the key it set (e.g. an unknown
/// field of that name).
fn blame_override(e: Error, overrides: &[String]) -> Error {
    let Error::Config { key, msg } = e else { return e };
    let related = |set: &str| {
        // A size estimate names every key that sized it (`model.base_width, model.blocks`).
        let below = key.split(", ").any(|k| k == set || k.starts_with(&format!("{set}.")));
        // serde names the field an error is about first, in backticks ("unknown field `x`,
        // expected one of `a`, `b`").
        let named = msg.split('`').nth(1);
        let above = set.strip_prefix(&format!("{key}.")).is_some_and(|rest| rest.split('.').next() == named);
        below || above
    };
    match overrides.iter().find(|o| o.split_once('=').is_some_and(|(k, _)| related(k.trim()))) {
        Some(spec) => Error::Argument(format!("--set `{spec}`: key `{key}`: {msg}")),
        None => Error::Config { key, msg },
    }
}

/// Applies one `a.b.c=value` override; the value is read as TOML (number, bool, array, quoted
/// string), and as a plain string when it is none of those.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) =
        spec.split_once('=').ok_or_else(|| Error::Argument(format!("--set `{spec}`: expected key.path=value")))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::Argument(format!("--set `{spec}`: empty key segment")));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {}", raw.trim()))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut cur = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = cur.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| {
            let msg = format!("`{}` is a value, not a table; cannot set a key inside it", parts[..=i].join("."));
            Error::Argument(format!("--set `{spec}`: {msg}"))
        })?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
