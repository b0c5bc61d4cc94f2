//! Image classifiers: ResNet-18/34/50/101 and ResNeXt-50 32x4d (CIFAR or ImageNet stem) and
//! WRN-28-8. Every network runs stage by stage ([`StagedNet`]), so callers can read any stage's
//! output (SAMix's Mixer reads stage 3) or mix hidden features between stages (ManifoldMix).
//! Touches only its own parameters.
pub mod config;
pub mod interop;
pub mod resnet;
pub mod wrn;

use crate::Result;
use tch::{nn, Tensor};

pub use config::{Arch, ModelConfig, NormKind, Stem};
pub use resnet::{ResNet, ResNetConfig};
pub use wrn::{WideResNet, WideResNetConfig};

/// A network that runs as stem → stages → head.
pub trait StagedNet {
    fn num_stages(&self) -> usize;
    fn stem_t(&self, x: &Tensor, train: bool) -> Tensor;
    /// Stage `i` (0-based; stage-k of the paper is `i = k − 1`).
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor;
    /// Global average pooling and the linear classifier on the last stage's output.
    fn head(&self, h: &Tensor) -> Tensor;
    /// Output channels of each stage.
    fn stage_channels(&self) -> Vec<i64>;
    /// Channels of the images the network reads.
    fn in_channels(&self) -> i64;
    /// Classes of its classifier.
    fn num_classes(&self) -> i64;

    /// Logits and the outputs of the stages listed in `keep` (in `keep`'s order).
    fn forward_stages(&self, x: &Tensor, train: bool, keep: &[usize]) -> (Tensor, Vec<Tensor>) {
        let (last, kept) = self.features(x, train, keep);
        (self.head(&last), kept)
    }

    /// The last stage's output (what the classifier pools) and the outputs of the stages in
    /// `keep` (in `keep`'s order), without the classifier.
    fn features(&self, x: &Tensor, train: bool, keep: &[usize]) -> (Tensor, Vec<Tensor>) {
        let mut h = self.stem_t(x, train);
        let mut kept: Vec<(usize, Tensor)> = Vec::new();
        for i in 0..self.num_stages() {
            h = self.stage_t(i, &h, train);
            if keep.contains(&i) {
                kept.push((i, h.shallow_clone()));
            }
        }
        let out =
            keep.iter().filter_map(|k| kept.iter().find(|(i, _)| i == k).map(|(_, t)| t.shallow_clone())).collect();
        (h, out)
    }
}

/// Any supported architecture.
pub enum Network {
    ResNet(ResNet),
    Wide(WideResNet),
}

impl Network {
    /// Builds the architecture a config names for `in_channels`-channel images and `num_classes`.
    pub fn new(path: &nn::Path, cfg: &ModelConfig, in_channels: i64, num_classes: i64) -> Result<Network> {
        Ok(match cfg.arch {
            Arch::Wrn28_8 => {
                let mut wc = WideResNetConfig::wrn28_8(in_channels, num_classes);
                if let Some(w) = cfg.base_width {
                    wc.base_width = w;
                }
                if let Some(b) = &cfg.blocks {
                    wc.blocks = b.clone();
                }
                wc.norm = NormChoice { kind: cfg.norm, groups: cfg.norm_groups, ..wc.norm };
                Network::Wide(WideResNet::new(path, &wc))
            }
            arch => {
                let mut rc = ResNetConfig::preset(arch, cfg.stem, in_channels, num_classes);
                if let Some(w) = cfg.base_width {
                    rc.base_width = w;
                }
                if let Some(b) = &cfg.blocks {
                    rc.blocks = b.clone();
                }
                rc.norm = NormChoice { kind: cfg.norm, groups: cfg.norm_groups, ..rc.norm };
                Network::ResNet(ResNet::new(path, &rc))
            }
        })
    }

    fn inner(&self) -> &dyn StagedNet {
        match self {
            Network::ResNet(n) => n,
            Network::Wide(n) => n,
        }
    }
}

impl StagedNet for Network {
    fn num_stages(&self) -> usize {
        self.inner().num_stages()
    }
    fn stem_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.inner().stem_t(x, train)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        self.inner().stage_t(i, h, train)
    }
    fn head(&self, h: &Tensor) -> Tensor {
        self.inner().head(h)
    }
    fn stage_channels(&self) -> Vec<i64> {
        self.inner().stage_channels()
    }
    fn in_channels(&self) -> i64 {
        self.inner().in_channels()
    }
    fn num_classes(&self) -> i64 {
        self.inner().num_classes()
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Network(stages: {:?})", self.stage_channels())
    }
}

impl nn::ModuleT for Network {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_stages(x, train, &[]).0
    }
}

/// Classifier head shared by the networks: GAP → flatten → linear, fc ~ N(0, 0.01²), bias 0.
#[derive(Debug)]
pub struct LinearHead {
    fc: nn::Linear,
}

impl LinearHead {
    pub fn new(path: &nn::Path, in_features: i64, num_classes: i64) -> Self {
        let cfg = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        LinearHead { fc: nn::linear(path / "fc", in_features, num_classes, cfg) }
    }
}

impl nn::Module for LinearHead {
    fn forward(&self, h: &Tensor) -> Tensor {
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

/// Kaiming-normal (fan-out, ReLU) convolution without bias, as the reference's ResNets.
pub fn conv(path: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> nn::Conv2D {
    conv_with(path, cin, cout, k, stride, groups, false)
}

/// As [`conv`], with a zero-initialised bias when `bias` (the reference's WRN).
pub fn conv_with(path: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64, bias: bool) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        groups,
        bias,
        bs_init: nn::Init::Const(0.0),
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(path, cin, cout, k, cfg)
}

/// BatchNorm with γ = `gamma` (1, or 0 for the last BN of a residual branch) and β = 0, with
/// torch's ε and momentum.
pub fn batch_norm(path: nn::Path, c: i64, gamma: f64) -> nn::BatchNorm {
    let NormChoice { eps, momentum, .. } = NormChoice::default();
    batch_norm_with(path, c, gamma, eps, momentum)
}

/// As [`batch_norm`] with ε `eps` and running-statistics momentum `momentum`.
fn batch_norm_with(path: nn::Path, c: i64, gamma: f64, eps: f64, momentum: f64) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(gamma),
        bs_init: nn::Init::Const(0.0),
        eps,
        momentum,
        ..Default::default()
    };
    nn::batch_norm2d(path, c, cfg)
}

/// Which normalisation a network's layers use (`model.norm` and `model.norm_groups`), with the
/// architecture's ε and BatchNorm momentum (torch's defaults 1e-5 and 0.1; the reference's
/// WRN uses 1e-3 and 0.001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormChoice {
    pub kind: NormKind,
    pub groups: i64,
    pub eps: f64,
    pub momentum: f64,
}

impl Default for NormChoice {
    fn default() -> Self {
        NormChoice { kind: NormKind::Batch, groups: 32, eps: 1e-5, momentum: 0.1 }
    }
}

/// A normalisation layer: BatchNorm, or GroupNorm (no running statistics; the same in training
/// and evaluation).
#[derive(Debug)]
pub enum Norm {
    Batch(nn::BatchNorm),
    Group(nn::GroupNorm),
}

impl nn::ModuleT for Norm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Norm::Batch(bn) => bn.forward_t(x, train),
            Norm::Group(gn) => gn.forward_t(x, train),
        }
    }
}

/// The chosen normalisation of `c` channels with γ = `gamma` and β = 0 (see [`batch_norm`]);
/// GroupNorm takes the largest divisor of `c` not above `choice.groups` as its group count.
pub fn norm(path: nn::Path, c: i64, gamma: f64, choice: NormChoice) -> Norm {
    match choice.kind {
        NormKind::Batch => Norm::Batch(batch_norm_with(path, c, gamma, choice.eps, choice.momentum)),
        NormKind::Group => {
            let groups = (1..=choice.groups.clamp(1, c.max(1))).rev().find(|g| c % g == 0).unwrap_or(1);
            let cfg = nn::GroupNormConfig {
                ws_init: nn::Init::Const(gamma),
                bs_init: nn::Init::Const(0.0),
                eps: choice.eps,
                ..Default::default()
            };
            Norm::Group(nn::group_norm(path, groups, c, cfg))
        }
    }
}
