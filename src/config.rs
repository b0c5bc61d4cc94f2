//! Run configuration: TOML files with strict keys (an unknown key is an error naming it), dotted
//! `--set key=value` overrides, defaults from the reference recipe, and range validation.
use crate::loss::MixupLoss;
use crate::mixer::{MaskLossConfig, MixerConfig, MixerVariant};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    Cifar10,
    Cifar100,
    Mnist,
    FashionMnist,
    ImageFolder,
    TinyImagenet,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion_mnist",
            DatasetKind::ImageFolder => "image_folder",
            DatasetKind::TinyImagenet => "tiny_imagenet",
        }
    }
    /// Native image side of the fixed-size datasets.
    pub fn native_size(self) -> Option<usize> {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Some(32),
            DatasetKind::Mnist | DatasetKind::FashionMnist => Some(28),
            DatasetKind::TinyImagenet => Some(64),
            DatasetKind::ImageFolder => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// Mirror without repeating the edge (the reference's CIFAR recipe).
    #[default]
    Reflect,
    Zeros,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// RandomCrop padding in pixels (0 = no random crop). CIFAR recipe: 4, reflect.
    #[serde(default)]
    pub crop_padding: usize,
    #[serde(default)]
    pub padding_mode: PaddingMode,
    #[serde(default)]
    pub hflip: bool,
    /// Output side for folder datasets (and a resize for fixed-size ones).
    #[serde(default)]
    pub image_size: Option<usize>,
    /// With `image_size`: RandomResizedCrop for training instead of resize + centre crop.
    #[serde(default)]
    pub random_resized_crop: bool,
    #[serde(default = "default_rrc_scale")]
    pub rrc_scale: [f64; 2],
    /// Shorter side before the centre crop at test time (ImageNet recipe: 256 for 224).
    #[serde(default)]
    pub test_resize: Option<usize>,
}

fn default_rrc_scale() -> [f64; 2] {
    [0.08, 1.0]
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crop_padding: 0,
            padding_mode: PaddingMode::Reflect,
            hflip: false,
            image_size: None,
            random_resized_crop: false,
            rrc_scale: default_rrc_scale(),
            test_resize: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Archive or folder holding the dataset in its official layout. Unset: the dataset's place in
    /// the data directory (`$SAMIX_DATA`, else `~/.cache/samix/data`), downloaded there when
    /// missing (`samix data download`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Use only the first N training / test images (quick runs, tests).
    #[serde(default)]
    pub train_limit: Option<usize>,
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Compare md5 sums of files whose official sums are known.
    #[serde(default = "yes")]
    pub verify_checksums: bool,
    #[serde(default = "default_workers")]
    pub workers: usize,
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    #[serde(default)]
    pub augment: AugmentConfig,
}

fn yes() -> bool {
    true
}
fn default_workers() -> usize {
    2
}
fn default_prefetch() -> usize {
    2
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// 3×3 conv, stride 1, no max-pool (32×32 and 64×64 inputs).
    #[default]
    Cifar,
    /// 7×7 conv stride 2 + 3×3 max-pool (224×224 inputs).
    Imagenet,
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
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default)]
    pub nesterov: bool,
}

fn default_lr() -> f64 {
    0.1
}
fn default_momentum() -> f64 {
    0.9
}
fn default_wd() -> f64 {
    1e-4
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { lr: default_lr(), momentum: default_momentum(), weight_decay: default_wd(), nesterov: false }
    }
}

/// Cosine annealing per epoch from `optim.lr` to `min_lr` (mmcv's by-epoch rule), after an
/// optional linear warm-up counted in iterations.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Learning rate at the first warm-up iteration.
    #[serde(default)]
    pub warmup_start_lr: f64,
}

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
    Cutmix { alpha: f64 },
    /// The whole paired image shrunk into a random box (τ from Beta(α, α) within [0.1, 0.8]).
    Resizemix { alpha: f64 },
    /// Grid of holes taking the paired image, hole side ratio √(1−λ).
    Gridmix { alpha: f64 },
    /// Gaussian blob of the paired image; α is not used by the mask (as the reference).
    Smoothmix { alpha: f64 },
    /// Binarised low-frequency Fourier mask keeping ~λ of the first image.
    Fmix {
        alpha: f64,
        #[serde(default = "fmix_decay")]
        decay_power: f64,
    },
    /// CutMix box centred on the saliency peak (spectral residual) of one paired image.
    Saliencymix { alpha: f64 },
    /// Top-λ cells of a frozen samix classifier's last feature map keep the first image.
    Attentivemix {
        alpha: f64,
        /// A samix run or checkpoint folder whose (EMA, for SAMix runs) classifier scores cells.
        checkpoint: PathBuf,
        /// Resize the batch to this side before scoring (the reference: 224 for an ImageNet net).
        #[serde(default)]
        upsample_to: Option<usize>,
    },
    /// PuzzleMix: saliency-guided graph-cut masks over a block grid plus block transport.
    Puzzlemix(crate::mix::PuzzleMixConfig),
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
        mode: crate::mix::LambdaMode,
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
    /// Online SAMix: a learnable Mixer trained through an EMA critic (SAMIX_SPEC.md §3).
    Samix(SamixConfig),
    /// Online AutoMix: the same training step with AutoMix's Mixer, mask loss and CE critic.
    Automix(SamixConfig),
}

impl MixConfig {
    /// A handcrafted policy by name with its α (default: the reference's CIFAR-100 ResNet-18
    /// value, SAMIX_SPEC.md §8), validated as a config would be.
    pub fn from_name(name: &str, alpha: Option<f64>) -> Result<MixConfig> {
        let alpha = alpha.unwrap_or(match name {
            "mixup" | "resizemix" => 1.0,
            "samix" | "automix" => 2.0,
            _ => 0.2,
        });
        let text = match name {
            "none" | "mixup_cutmix" => format!("policy = \"{name}\""),
            _ => format!("policy = \"{name}\"\nalpha = {alpha:?}"),
        };
        let cfg: MixConfig = toml::from_str(&text).map_err(|e| Error::config("--policy", e.message().to_string()))?;
        match &cfg {
            MixConfig::Samix(_) | MixConfig::Automix(_) => {
                return Err(Error::config("--policy", "samix/automix learn their masks during training; see the run's visuals/"))
            }
            MixConfig::None => {}
            _ if !(alpha.is_finite() && alpha > 0.0) => return Err(Error::config("--alpha", format!("{alpha} is not a positive number"))),
            _ => {}
        }
        Ok(cfg)
    }

    /// The feature-level policy, if this config names one (it runs inside the network).
    pub fn feature_mix(&self) -> Result<Option<crate::mix::FeatureMix>> {
        use crate::mix::{AlignMix, FeatureMix, ManifoldMix};
        Ok(match self {
            MixConfig::Manifoldmix { alpha, points } => Some(FeatureMix::Manifold(ManifoldMix::new(*alpha, points.clone())?)),
            MixConfig::Alignmix { alpha, epsilon, sinkhorn_iterations, alternate_manifold } => {
                let align = AlignMix::new(*alpha, *epsilon, *sinkhorn_iterations)?;
                Some(if *alternate_manifold {
                    FeatureMix::ManifoldOrAlign(ManifoldMix::new(*alpha, manifold_points())?, align)
                } else {
                    FeatureMix::Align(align)
                })
            }
            _ => None,
        })
    }

    /// The online-Mixer settings with the variant's defaults filled in, if this is one.
    pub fn online_mixer(&self) -> Option<ResolvedSamix> {
        match self {
            MixConfig::Samix(c) => Some(c.resolve(MixerVariant::Samix)),
            MixConfig::Automix(c) => Some(c.resolve(MixerVariant::Automix)),
            _ => None,
        }
    }
}

/// Options of online SAMix / AutoMix; defaults are the reference's CIFAR-100 ResNet-18 settings
/// (SAMIX_SPEC.md §3.6–§3.7, §4).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamixConfig {
    /// λ ~ Beta(α, α), two draws per step (Mixer branch, backbone branch).
    #[serde(default = "two_f")]
    pub alpha: f64,
    /// 0-based stage whose output the Mixer reads (2 = stage-3 of a ResNet; WRN: 1).
    #[serde(default = "two_u")]
    pub mask_stage: usize,
    /// Backbone branch falls back to plain mixup when λ or 1−λ is at most this.
    #[serde(default = "lam_margin")]
    pub lam_margin: f64,
    /// Probability of rescaling the backbone mask to its own λ's area (§3.3).
    #[serde(default)]
    pub mask_adjust: f64,
    /// Mixer architecture (default: the variant's).
    #[serde(default)]
    pub mixer: Option<MixerConfig>,
    /// Mask regulariser (default: SAMix L1+Variance, AutoMix L1; margin 0.1, weight 0.1).
    #[serde(default)]
    pub mask_loss: Option<MaskLossConfig>,
    /// Loss of the Mixer branch through the EMA critic (default: SAMix pair-local + 0.5·global,
    /// AutoMix soft CE).
    #[serde(default)]
    pub mixer_loss: Option<MixupLoss>,
    /// Optimiser settings of the Mixer's parameters (unset fields follow `[optim]`/`[schedule]`).
    #[serde(default)]
    pub mixer_optim: MixerOptimConfig,
    #[serde(default)]
    pub ema: EmaConfig,
    /// Write a grid of pairs, masks and mixed images every N epochs (0 = only after the last).
    #[serde(default = "ten")]
    pub visual_every: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixerOptimConfig {
    pub lr: Option<f64>,
    pub min_lr: Option<f64>,
    pub momentum: Option<f64>,
    pub weight_decay: Option<f64>,
}

/// EMA momentum: `base` for the first `warmup_fraction` of the iterations, then the reference's
/// cosine rise `end − (end − base)·(cos(π·t/T) + 1)/2` (SAMIX_SPEC.md §3.5).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmaConfig {
    #[serde(default = "ema_base")]
    pub momentum: f64,
    #[serde(default = "ema_end")]
    pub end_momentum: f64,
    #[serde(default = "tenth_f")]
    pub warmup_fraction: f64,
}

impl Default for EmaConfig {
    fn default() -> Self {
        EmaConfig { momentum: ema_base(), end_momentum: ema_end(), warmup_fraction: tenth_f() }
    }
}

impl EmaConfig {
    /// Momentum before iteration `t` of `total`.
    pub fn momentum_at(&self, t: u64, total: u64) -> f64 {
        let progress = t as f64 / total.max(1) as f64;
        if progress < self.warmup_fraction {
            self.momentum
        } else {
            self.end_momentum - (self.end_momentum - self.momentum) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
        }
    }
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
fn two_f() -> f64 {
    2.0
}
fn two_u() -> usize {
    2
}
fn lam_margin() -> f64 {
    0.08
}
fn ema_base() -> f64 {
    0.999
}
fn ema_end() -> f64 {
    0.999999
}
fn tenth_f() -> f64 {
    0.1
}

/// [`SamixConfig`] with every optional part decided.
#[derive(Clone, Debug)]
pub struct ResolvedSamix {
    pub cfg: SamixConfig,
    pub mixer: MixerConfig,
    pub mask_loss: MaskLossConfig,
    pub mixer_loss: MixupLoss,
}

impl SamixConfig {
    pub fn resolve(&self, variant: MixerVariant) -> ResolvedSamix {
        let (mixer, mask_loss, mixer_loss) = match variant {
            MixerVariant::Samix => (MixerConfig::default(), MaskLossConfig::samix(), MixupLoss::PairLocalGlobal { eta: 0.5 }),
            MixerVariant::Automix => (MixerConfig::automix(), MaskLossConfig::automix(), MixupLoss::SoftCe),
        };
        let mut mixer = self.mixer.clone().unwrap_or(mixer);
        mixer.variant = variant;
        ResolvedSamix {
            cfg: self.clone(),
            mixer,
            mask_loss: self.mask_loss.clone().unwrap_or(mask_loss),
            mixer_loss: self.mixer_loss.clone().unwrap_or(mixer_loss),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Save a checkpoint every N epochs (the last epoch always).
    #[serde(default = "one")]
    pub checkpoint_every: usize,
    /// How many epochs of test accuracy the run summary takes the median over (reference: 10).
    #[serde(default = "ten")]
    pub median_of_last: usize,
    /// libtorch intra-op threads on CPU (0 = libtorch's default).
    #[serde(default)]
    pub threads: usize,
    /// `f32`, or `bf16`: the training forward passes and losses under bf16 autocast
    /// (parameters, gradients, optimiser state and evaluation stay f32).
    #[serde(default)]
    pub precision: crate::native::Precision,
    /// Convolution weights and training batches in channels-last (NHWC) memory order, which
    /// oneDNN and cuDNN run faster (checkpoints are written in the usual layout either way).
    #[serde(default)]
    pub channels_last: bool,
}

fn default_batch() -> usize {
    100
}
fn one() -> usize {
    1
}
fn ten() -> usize {
    10
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
}

impl TrainConfig {
    /// Reads a TOML file, applies `key.path=value` overrides, and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, overrides).map_err(|e| match e {
            Error::ConfigFile { msg, .. } => Error::ConfigFile { path: path.to_path_buf(), msg },
            Error::Config { key, msg } => Error::ConfigFile { path: path.to_path_buf(), msg: format!("key `{key}`: {msg}") },
            other => other,
        })
    }

    pub fn parse(text: &str, overrides: &[String]) -> Result<TrainConfig> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| Error::ConfigFile { path: PathBuf::new(), msg: e.to_string() })?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            // toml appends "in `table`" on a second line; the key path already says where.
            let msg = e.into_inner().to_string();
            let msg = msg.lines().next().unwrap_or_default().to_string();
            Error::config(if key == "." { "(top level)".into() } else { key }, msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, key: &str, msg: &str| if ok { Ok(()) } else { Err(Error::config(key, msg)) };
        let t = &self.train;
        check(t.epochs >= 1, "train.epochs", "must be at least 1")?;
        check(t.batch_size >= 1, "train.batch_size", "must be at least 1")?;
        check(t.eval_batch_size.map_or(true, |b| b >= 1), "train.eval_batch_size", "must be at least 1")?;
        check((0.0..1.0).contains(&t.label_smoothing), "train.label_smoothing", "must be in [0, 1)")?;
        check(t.checkpoint_every >= 1, "train.checkpoint_every", "must be at least 1")?;
        check(t.median_of_last >= 1, "train.median_of_last", "must be at least 1")?;
        let o = &self.optim;
        check(o.lr.is_finite() && o.lr > 0.0, "optim.lr", "must be a positive number")?;
        check((0.0..1.0).contains(&o.momentum), "optim.momentum", "must be in [0, 1)")?;
        check(o.weight_decay.is_finite() && o.weight_decay >= 0.0, "optim.weight_decay", "must be >= 0")?;
        check(!o.nesterov || o.momentum > 0.0, "optim.nesterov", "needs optim.momentum > 0")?;
        let s = &self.schedule;
        check(s.min_lr >= 0.0 && s.min_lr <= o.lr, "schedule.min_lr", "must be in [0, optim.lr]")?;
        check(s.warmup_epochs >= 0.0 && s.warmup_epochs < t.epochs as f64, "schedule.warmup_epochs", "must be in [0, train.epochs)")?;
        check(s.warmup_start_lr >= 0.0 && s.warmup_start_lr <= o.lr, "schedule.warmup_start_lr", "must be in [0, optim.lr]")?;
        match &self.mix {
            MixConfig::None => {}
            MixConfig::Puzzlemix(p) => {
                crate::mix::PuzzleMix::new(p.clone(), vec![], vec![])?;
            }
            MixConfig::MixupCutmix { .. } => {
                crate::mix::Policy::from_config(&self.mix)?;
            }
            MixConfig::Mixup { alpha, .. }
            | MixConfig::Cutmix { alpha }
            | MixConfig::Resizemix { alpha }
            | MixConfig::Gridmix { alpha }
            | MixConfig::Smoothmix { alpha }
            | MixConfig::Fmix { alpha, .. }
            | MixConfig::Saliencymix { alpha }
            | MixConfig::Manifoldmix { alpha, .. }
            | MixConfig::Attentivemix { alpha, .. }
            | MixConfig::Alignmix { alpha, .. } => {
                let alpha = *alpha;
                check(alpha.is_finite() && alpha > 0.0, "mix.alpha", "must be a positive number (Beta(α, α))")?
            }
            MixConfig::Samix(c) | MixConfig::Automix(c) => {
                check(c.alpha.is_finite() && c.alpha > 0.0, "mix.alpha", "must be a positive number (Beta(α, α))")?;
                check((0.0..0.5).contains(&c.lam_margin) || c.lam_margin < 0.0, "mix.lam_margin", "must be below 0.5")?;
                check((0.0..=1.0).contains(&c.mask_adjust), "mix.mask_adjust", "is a probability in [0, 1]")?;
                let e = &c.ema;
                check((0.0..=1.0).contains(&e.momentum) && (0.0..=1.0).contains(&e.end_momentum), "mix.ema", "momenta must be in [0, 1]")?;
                check((0.0..=1.0).contains(&e.warmup_fraction), "mix.ema.warmup_fraction", "must be in [0, 1]")?;
                let r = self.mix.online_mixer().map(|r| r.mixer).unwrap_or_default();
                check(r.reduction >= 1, "mix.mixer.reduction", "must be at least 1")?;
                check((0.0..1.0).contains(&r.value_dropout), "mix.mixer.value_dropout", "must be in [0, 1)")?;
                let o = &c.mixer_optim;
                check(o.lr.map_or(true, |v| v > 0.0 && v.is_finite()), "mix.mixer_optim.lr", "must be a positive number")?;
                check(o.min_lr.map_or(true, |v| v >= 0.0), "mix.mixer_optim.min_lr", "must be >= 0")?;
                check(o.momentum.map_or(true, |v| (0.0..1.0).contains(&v)), "mix.mixer_optim.momentum", "must be in [0, 1)")?;
                check(o.weight_decay.map_or(true, |v| v >= 0.0), "mix.mixer_optim.weight_decay", "must be >= 0")?;
                let stages = if self.model.arch == Arch::Wrn28_8 { 3 } else { 4 };
                check(c.mask_stage + 1 < stages, "mix.mask_stage", &format!("must be a stage before the last (0..{})", stages - 1))?;
            }
        }
        if let MixConfig::Manifoldmix { points, .. } = &self.mix {
            let stages = if self.model.arch == Arch::Wrn28_8 { 3 } else { 4 };
            check(!points.is_empty() && points.iter().all(|&p| p < stages), "mix.points", &format!("must list mixing points in 0..{stages} (0 = input, k = after stage k)"))?;
        }
        let m = &self.model;
        check(m.base_width.map_or(true, |w| w >= 1), "model.base_width", "must be at least 1")?;
        if let Some(blocks) = &m.blocks {
            let stages = if m.arch == Arch::Wrn28_8 { 3 } else { 4 };
            check(blocks.len() == stages && blocks.iter().all(|&b| b >= 1), "model.blocks", &format!("must list {stages} positive block counts"))?;
        }
        let a = &self.data.augment;
        check(a.image_size.map_or(true, |s| s >= 1), "data.augment.image_size", "must be at least 1")?;
        check(a.rrc_scale[0] > 0.0 && a.rrc_scale[0] <= a.rrc_scale[1] && a.rrc_scale[1] <= 1.0, "data.augment.rrc_scale", "must be [lo, hi] with 0 < lo <= hi <= 1")?;
        check(
            a.image_size.is_some() || self.data.dataset.native_size().is_some(),
            "data.augment.image_size",
            "is required for image_folder datasets (images of any size are resized to it)",
        )?;
        Ok(())
    }
}

/// Applies one `a.b.c=value` override; the value is read as TOML (number, bool, array, quoted
/// string), and as a plain string when it is none of those.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| Error::Argument(format!("--set `{spec}`: expected key.path=value")))?;
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
            Error::config(parts[..=i].join("."), "is a value, not a table; cannot set a key inside it")
        })?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
