//! The layers the networks are built from: convolutions, BatchNorm/GroupNorm with their
//! initialisations, the linear head. Touches only the parameters it creates.
use super::config::NormKind;
use tch::{nn, Tensor};

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

    /// The linear layer alone, on pooled (B, C) features.
    pub fn classify(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.fc)
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
