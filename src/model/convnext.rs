//! ConvNeXt (Liu et al., 2022) as timm builds it: a patchify stem (4×4 convolution of stride 4,
//! LayerNorm; or the reference's CIFAR stem, 3×3 of stride 1), four stages (the later three open with LayerNorm and a 2×2 stride-2
//! convolution), blocks of a 7×7 depthwise convolution, LayerNorm, a 4× GELU MLP and a layer
//! scale γ, with drop path; the head pools, normalises and classifies. Variables carry timm's
//! names (`stem.0`, `stages.1.downsample.1`, `stages.2.blocks.4.mlp.fc1`, `head.norm`, `head.fc`),
//! so timm's state dicts load as they are. Touches only its own parameters.
use super::staged::StagedNet;
use super::transformer_layers::{drop_path, drop_path_rates, layer_norm, linear, trunc_normal_, Mlp};
use tch::{nn, nn::Module, nn::ModuleT, Tensor};

/// LayerNorm ε of timm's ConvNeXt.
const LN_EPS: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct ConvNextConfig {
    pub in_channels: i64,
    pub num_classes: i64,
    /// Blocks per stage.
    pub depths: Vec<usize>,
    /// Channels per stage.
    pub dims: Vec<i64>,
    /// The stem convolution's side and stride: 4 and 4 (patchify) at 224 px; 3 and 1 for 32-px
    /// CIFAR images (the reference's `ConvNeXt_CIFAR`).
    pub stem_kernel: i64,
    pub stem_stride: i64,
    /// Initial value of every block's layer scale γ.
    pub layer_scale: f64,
    /// The last block's drop-path probability (earlier blocks' rise linearly from 0).
    pub drop_path: f64,
}

impl ConvNextConfig {
    /// ConvNeXt-T: depths 3-3-9-3, widths 96-192-384-768, stem patch 4.
    pub fn tiny(in_channels: i64, num_classes: i64) -> Self {
        ConvNextConfig {
            in_channels,
            num_classes,
            depths: vec![3, 3, 9, 3],
            dims: vec![96, 192, 384, 768],
            stem_kernel: 4,
            stem_stride: 4,
            layer_scale: 1e-6,
            drop_path: 0.0,
        }
    }
}

/// LayerNorm over the channels of an NCHW map (timm's `LayerNorm2d`: to NHWC and back).
#[derive(Debug)]
pub struct LayerNorm2d(nn::LayerNorm);

impl LayerNorm2d {
    pub fn new(path: nn::Path, c: i64) -> Self {
        LayerNorm2d(layer_norm(path, c, LN_EPS))
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.permute([0, 2, 3, 1]).apply(&self.0).permute([0, 3, 1, 2])
    }
}

/// A convolution with timm's ConvNeXt initialisation: weight ~ trunc-normal(0.02), bias 0. Odd
/// sides pad to keep the size; even ones (patchify, downsampling) do not pad.
fn conv(path: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> nn::Conv2D {
    let padding = if k % 2 == 1 { k / 2 } else { 0 };
    let cfg = nn::ConvConfig { stride, padding, groups, ..Default::default() };
    let mut layer = nn::conv2d(path, cin, cout, k, cfg);
    trunc_normal_(&mut layer.ws, 0.02);
    if let Some(b) = layer.bs.as_mut() {
        tch::no_grad(|| {
            let _ = b.zero_();
        });
    }
    layer
}

/// One ConvNeXt block: `x + dp(γ · mlp(norm(dwconv(x))))`, the MLP in NHWC.
#[derive(Debug)]
pub struct ConvNextBlock {
    conv_dw: nn::Conv2D,
    norm: nn::LayerNorm,
    mlp: Mlp,
    gamma: Tensor,
    drop_path: f64,
}

impl ConvNextBlock {
    pub fn new(path: &nn::Path, c: i64, layer_scale: f64, drop_path: f64) -> Self {
        ConvNextBlock {
            conv_dw: conv(path / "conv_dw", c, c, 7, 1, c),
            norm: layer_norm(path / "norm", c, LN_EPS),
            mlp: Mlp::new(&(path / "mlp"), c, 4 * c),
            gamma: path.var("gamma", &[c], nn::Init::Const(layer_scale)),
            drop_path,
        }
    }
}

impl ModuleT for ConvNextBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv_dw).permute([0, 2, 3, 1]).apply(&self.norm).apply(&self.mlp);
        let y = (y * &self.gamma).permute([0, 3, 1, 2]);
        x + drop_path(&y, self.drop_path, train)
    }
}

/// A stage: the downsampling (none in the first stage) and its blocks.
#[derive(Debug)]
pub struct ConvNextStage {
    downsample: Option<(LayerNorm2d, nn::Conv2D)>,
    blocks: Vec<ConvNextBlock>,
}

impl ModuleT for ConvNextStage {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = match &self.downsample {
            Some((norm, conv)) => x.apply(norm).apply(conv),
            None => x.shallow_clone(),
        };
        for b in &self.blocks {
            h = b.forward_t(&h, train);
        }
        h
    }
}

#[derive(Debug)]
pub struct ConvNext {
    stem: (nn::Conv2D, LayerNorm2d),
    stages: Vec<ConvNextStage>,
    head_norm: nn::LayerNorm,
    head_fc: nn::Linear,
    config: ConvNextConfig,
}

impl ConvNext {
    pub fn new(path: &nn::Path, cfg: &ConvNextConfig) -> Self {
        let stem_path = path / "stem";
        let d0 = cfg.dims[0];
        let stem_conv = conv(&stem_path / 0, cfg.in_channels, d0, cfg.stem_kernel, cfg.stem_stride, 1);
        let stem = (stem_conv, LayerNorm2d::new(&stem_path / 1, d0));
        let rates = drop_path_rates(cfg.drop_path, cfg.depths.iter().sum());
        let mut rates = rates.into_iter();
        let mut stages = Vec::new();
        for (s, (&depth, &c)) in cfg.depths.iter().zip(&cfg.dims).enumerate() {
            let sp = path / "stages" / s;
            let downsample = (s > 0).then(|| {
                let prev = cfg.dims[s - 1];
                let ds = &sp / "downsample";
                (LayerNorm2d::new(&ds / 0, prev), conv(&ds / 1, prev, c, 2, 2, 1))
            });
            let blocks = (0..depth)
                .map(|j| ConvNextBlock::new(&(&sp / "blocks" / j), c, cfg.layer_scale, rates.next().unwrap_or(0.0)))
                .collect();
            stages.push(ConvNextStage { downsample, blocks });
        }
        let last = *cfg.dims.last().unwrap_or(&d0);
        let head = path / "head";
        ConvNext {
            stem,
            stages,
            head_norm: layer_norm(&head / "norm", last, LN_EPS),
            head_fc: linear(&head / "fc", last, cfg.num_classes),
            config: cfg.clone(),
        }
    }

    pub fn config(&self) -> &ConvNextConfig {
        &self.config
    }
}

impl StagedNet for ConvNext {
    fn num_stages(&self) -> usize {
        self.stages.len()
    }
    fn stem_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.apply(&self.stem.0).apply(&self.stem.1)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        self.stages[i].forward_t(h, train)
    }
    /// Global average pooling, then the head's LayerNorm.
    fn pool(&self, h: &Tensor) -> Tensor {
        h.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.head_norm)
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.head_fc)
    }
    fn stage_channels(&self) -> Vec<i64> {
        self.config.dims.clone()
    }
    fn in_channels(&self) -> i64 {
        self.config.in_channels
    }
    fn num_classes(&self) -> i64 {
        self.config.num_classes
    }
}
