//! The run recipe: one TOML file (`TrainConfig`) naming the data, the model, the optimiser and its
//! schedule, the mixing, and the training loop's own settings (`[train]`), with strict keys (an
//! unknown key is an error naming it), dotted `--set key=value` overrides, and the cross-field
//! checks. Each table's type and defaults live beside what it configures (`data`, `model`,
//! `optim`, `mix`, `samix`); this module only puts them together, with the list of mixing
//! policies in `config::mix`, and reads older run directories' keys (`config::stored`).
use crate::data::DataConfig;
use crate::limits::{check_seconds, check_size, MAX_BATCH, MAX_EPOCHS};
use crate::model::ModelConfig;
use crate::native::Precision;
use crate::optim::{OptimConfig, ScheduleConfig};
use crate::samix::{AutomixConfig, MixerVariant, Scenario};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod mix;
mod overrides;
mod stored;

pub use mix::MixConfig;
pub use overrides::apply_override;
use overrides::blame_override;

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
    /// `ce` (the reference's) or `bce` (timm's binary cross-entropy on the mixed targets), for
    /// input and feature policies.
    #[serde(default)]
    pub loss: crate::loss::ClassLoss,
    /// With `loss = "bce"`: targets above this become 1, the rest 0 (timm's `target_threshold`,
    /// 0.2 in its "ResNet strikes back" recipe). Unset: the soft targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bce_threshold: Option<f64>,
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
    /// Linear evaluation's BatchNorm: `eval` (the backbone's statistics stay pre-training's) or
    /// `train` (the reference's protocol: batch statistics while the classifier trains and the
    /// running statistics updated, only BN's scale and shift frozen — `frozen_stages = 4,
    /// norm_eval = False` in openmixup/models/backbones/resnet_mmcls.py).
    #[serde(default)]
    pub probe_bn: ProbeBn,
}

/// `train.probe_bn`: the mode the frozen backbone's BatchNorm runs in during linear evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeBn {
    #[default]
    Eval,
    Train,
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
            loss: crate::loss::ClassLoss::Ce,
            bce_threshold: None,
            checkpoint_every: Self::default_checkpoint_every(),
            median_of_last: Self::default_median_of_last(),
            threads: 0,
            precision: Precision::default(),
            channels_last: false,
            linear_probe: false,
            probe_bn: ProbeBn::Eval,
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
        match self.bce_threshold {
            Some(_) if self.loss != crate::loss::ClassLoss::Bce => {
                return fail("bce_threshold", "needs train.loss = \"bce\"")
            }
            Some(t) if !(t > 0.0 && t < 1.0) => return fail("bce_threshold", "must be in (0, 1)"),
            _ => {}
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
        Self::parse(&text, overrides).map_err(|e| Self::in_file(e, path))
    }

    /// An error of a file's keys, naming the file.
    fn in_file(e: Error, path: &Path) -> Error {
        match e {
            Error::ConfigFile { msg, .. } => Error::ConfigFile { path: path.to_path_buf(), msg },
            Error::Config { key, msg } => {
                Error::ConfigFile { path: path.to_path_buf(), msg: format!("key `{key}`: {msg}") }
            }
            other => other,
        }
    }

    /// A run or checkpoint folder's `config.toml` (as [`TrainConfig::load`]), with the keys of
    /// older samix versions moved to where they live now (see `config::stored`).
    pub fn load_stored(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut table = Self::read_table(&text)?;
        stored::migrate(&mut table);
        Self::parse_table(table, overrides).map_err(|e| Self::in_file(e, path))
    }

    pub fn parse(text: &str, overrides: &[String]) -> Result<TrainConfig> {
        Self::parse_table(Self::read_table(text)?, overrides)
    }

    fn read_table(text: &str) -> Result<toml::Table> {
        toml::from_str(text).map_err(|e| Error::ConfigFile { path: PathBuf::new(), msg: e.to_string() })
    }

    fn parse_table(mut table: toml::Table, overrides: &[String]) -> Result<TrainConfig> {
        // The file alone, to tell whether an error is the file's or a --set's.
        let original = if overrides.is_empty() { toml::Table::new() } else { table.clone() };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let mix = table.get("mix").and_then(|m| m.as_table()).cloned();
        let checked = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = match e.path().to_string() {
                    k if k == "mix" => mix.as_ref().and_then(MixConfig::error_path).map_or(k, |p| format!("mix.{p}")),
                    k => k,
                };
                // toml appends "in `table`" on a second line; the key path already says where.
                let msg = e.into_inner().to_string();
                let msg = msg.lines().next().unwrap_or("").to_string();
                Error::config(if key == "." { "(top level)".into() } else { key }, msg)
            })
            .and_then(|mut cfg: TrainConfig| {
                cfg.validate()?;
                cfg.mix.settle(cfg.scenario());
                cfg.optim = cfg.optim.clone().settled();
                Ok(cfg)
            });
        checked
            .map_err(|e| blame_override(e, overrides, || Self::parse_table(original, &[]).err().map(|e| e.to_string())))
    }

    /// Supervised, or self-supervised when the run has `[ssl]`.
    pub fn scenario(&self) -> Scenario {
        if self.ssl.is_some() {
            Scenario::SelfSupervised
        } else {
            Scenario::Supervised
        }
    }

    /// The resolved config as TOML (what a run directory's `config.toml` holds).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::serialize("config.toml", e))
    }

    /// [`TrainConfig::to_toml`] with online SAMix/AutoMix's sub-tables (`mix.mixer`,
    /// `mix.mask_loss`, `mix.mixer_loss`, `mix.mixer_optim`, `mix.mask_adjust`) written out with
    /// the defaults the run resolves them to (`samix config show`; they were left out or empty,
    /// issue 24 R13).
    pub fn to_toml_resolved(&self) -> Result<String> {
        let scenario = if self.ssl.is_some() { Scenario::SelfSupervised } else { Scenario::Supervised };
        let (optim, schedule) = (&self.optim, &self.schedule);
        let mix = match &self.mix {
            MixConfig::Samix(c) => MixConfig::Samix(c.resolved(MixerVariant::Samix, scenario, optim, schedule)),
            MixConfig::Automix(c) => {
                MixConfig::Automix(AutomixConfig(c.0.resolved(MixerVariant::Automix, scenario, optim, schedule)))
            }
            other => other.clone(),
        };
        TrainConfig { mix, ..self.clone() }.to_toml()
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
        self.mix.check(self.model.num_stages())?;
        self.log.check()?;
        self.dist.check()?;
        self.model.check()?;
        self.data.check()?;
        if let Some((c, _)) = self.mix.online_config() {
            c.check_scenario(self.scenario())?;
            if self.train.loss != crate::loss::ClassLoss::Ce {
                let msg =
                    "is for input and feature policies; online SAMix/AutoMix train with the reference's cross-entropy";
                return Err(Error::config("train.loss", msg));
            }
            if self.optim.kind == crate::optim::OptimKind::Adamw && c.mixer_optim.momentum.is_some() {
                let msg = "is SGD's; under optim.kind = \"adamw\" the Mixer's group uses AdamW too";
                return Err(Error::config("mix.mixer_optim.momentum", msg));
            }
            if self.ssl.is_some() && c.mask_adjust == Some(crate::samix::MaskAdjust::Probability(0.0)) {
                // Before [mix] held SAMix-SSL's keys, [ssl] ignored this one and ran "auto".
                tracing::warn!("mix.mask_adjust = 0 turns SAMix-SSL's area adjustment off; its default is \"auto\"");
            }
        }
        if let Some(ssl) = &self.ssl {
            self.check_ssl(ssl)?;
        }
        self.check_network_size()?;
        self.check_vit_side()?;
        let never_probes = self.ssl.is_some() || self.mix.online_config().is_some();
        if self.train.probe_bn == ProbeBn::Train && never_probes {
            let msg = "applies to linear evaluation, which neither pre-training ([ssl]) nor online SAMix runs";
            return Err(Error::config("train.probe_bn", msg));
        }
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

    /// A ViT or Swin is built for one image side (the position embedding has an entry per patch,
    /// Swin's shifted windows a mask per map size): the data's must be it.
    fn check_vit_side(&self) -> Result<()> {
        let built = match self.model.arch.family() {
            crate::model::Family::Vit => self.model.vit_config(3, 1)?.image_size,
            crate::model::Family::Swin => self.model.swin_config(3, 1)?.image_size,
            _ => return Ok(()),
        };
        match self.image_side() {
            Some(side) if side != built => {
                let msg = format!(
                    "the transformer is built for {built}-px images, the data give {side} px (data.augment.image_size)"
                );
                Err(Error::config("model.image_size", msg))
            }
            _ => Ok(()),
        }
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
        if self.train.loss != crate::loss::ClassLoss::Ce {
            return Err(Error::config("train.loss", "has no meaning without labels ([ssl])"));
        }
        if let Some((c, _)) = self.mix.online_config() {
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
            MixConfig::Manifoldmix(_) | MixConfig::Alignmix(_) | MixConfig::Puzzlemix(_) | MixConfig::Transmix(_) => {
                Err(Error::config("mix.policy", "manifoldmix/alignmix/puzzlemix/transmix mix through a classifier; self-supervised pre-training supports none, the input policies and samix/automix"))
            }
            MixConfig::Resizemix(_) if ssl.cross_view => Err(Error::config(
                "ssl.cross_view",
                "resizemix pastes a resized copy of the partner, which has no cross-view form; use it on the query view",
            )),
            MixConfig::None(_) if ssl.cross_view => {
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
