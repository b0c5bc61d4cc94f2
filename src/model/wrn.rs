//! Wide ResNet (pre-activation wide basic blocks, three stages) as the SAMix reference builds it
//! (docs/ALGORITHM.md §9; OpenMixup's `WideResNet`): WRN-28-8 on CIFAR has 4 blocks per stage,
//! widths 128/256/512, strides 1/2/2, no dropout; LeakyReLU with slope 0.1; BatchNorm with
//! ε = 1e-3 and momentum 0.001; every convolution with a zero-initialised bias. The projection
//! shortcut of the first stage's first block reads the pre-activated input, those of the later
//! stages the raw input. The final BN + activation is part of the last stage, so that stage's
//! output is exactly what the classifier pools.
use super::layers::{conv_with, norm, LinearHead, Norm, NormChoice};
use super::staged::StagedNet;
use tch::{nn, nn::ModuleT, Tensor};

#[derive(Clone, Debug)]
pub struct WideResNetConfig {
    pub blocks: Vec<usize>,
    /// Channels before widening: the stem has `base_width`, stages `base_width·widen·{1,2,4}`.
    pub base_width: i64,
    pub widen: i64,
    pub in_channels: i64,
    pub num_classes: i64,
    pub norm: NormChoice,
}

impl WideResNetConfig {
    pub fn wrn28_8(in_channels: i64, num_classes: i64) -> Self {
        // depth 28 = 6·4 + 4: four blocks in each of the three stages.
        WideResNetConfig {
            blocks: vec![4, 4, 4],
            base_width: 16,
            widen: 8,
            in_channels,
            num_classes,
            norm: NormChoice { eps: 1e-3, momentum: 0.001, ..NormChoice::default() },
        }
    }
}

/// LeakyReLU with slope 0.1 (tch's `leaky_relu` has torch's default 0.01 built in).
fn leaky_relu(x: &Tensor) -> Tensor {
    x.maximum(&(x * 0.1))
}

#[derive(Debug)]
pub struct WideBlock {
    bn1: Norm,
    conv1: nn::Conv2D,
    bn2: Norm,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
    /// Whether a projection shortcut reads the pre-activated input (the first stage) rather
    /// than the raw one (later stages).
    shortcut_after_activation: bool,
}

impl WideBlock {
    /// A block of `stage` (0-based).
    pub fn new(path: &nn::Path, cin: i64, cout: i64, stride: i64, stage: usize, choice: NormChoice) -> Self {
        WideBlock {
            bn1: norm(path / "bn1", cin, 1.0, choice),
            conv1: conv_with(path / "conv1", cin, cout, 3, stride, 1, true),
            bn2: norm(path / "bn2", cout, 1.0, choice),
            conv2: conv_with(path / "conv2", cout, cout, 3, 1, 1, true),
            shortcut: (cin != cout || stride != 1).then(|| conv_with(path / "shortcut", cin, cout, 1, stride, 1, true)),
            shortcut_after_activation: stage == 0,
        }
    }
}

impl ModuleT for WideBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let pre = leaky_relu(&x.apply_t(&self.bn1, train));
        let skip = match &self.shortcut {
            Some(s) if self.shortcut_after_activation => pre.apply(s),
            Some(s) => x.apply(s),
            None => x.shallow_clone(),
        };
        leaky_relu(&pre.apply(&self.conv1).apply_t(&self.bn2, train)).apply(&self.conv2) + skip
    }
}

#[derive(Debug)]
pub struct WideResNet {
    stem: nn::Conv2D,
    stages: Vec<Vec<WideBlock>>,
    final_bn: Norm,
    head: LinearHead,
    channels: Vec<i64>,
    in_channels: i64,
    num_classes: i64,
}

impl WideResNet {
    pub fn new(path: &nn::Path, cfg: &WideResNetConfig) -> Self {
        let stem = conv_with(path / "conv1", cfg.in_channels, cfg.base_width, 3, 1, 1, true);
        let mut cin = cfg.base_width;
        let mut stages = Vec::new();
        let mut channels = Vec::new();
        for (i, &n) in cfg.blocks.iter().enumerate() {
            let cout = (cfg.base_width * cfg.widen) << i;
            let blocks = (0..n)
                .map(|j| {
                    let b = WideBlock::new(
                        &(path / format!("layer{}", i + 1) / j),
                        cin,
                        cout,
                        if j == 0 && i > 0 { 2 } else { 1 },
                        i,
                        cfg.norm,
                    );
                    cin = cout;
                    b
                })
                .collect();
            stages.push(blocks);
            channels.push(cout);
        }
        let final_bn = norm(path / "bn_final", cin, 1.0, cfg.norm);
        let head = LinearHead::new(path, cin, cfg.num_classes);
        WideResNet {
            stem,
            stages,
            final_bn,
            head,
            channels,
            in_channels: cfg.in_channels,
            num_classes: cfg.num_classes,
        }
    }
}

impl StagedNet for WideResNet {
    fn num_stages(&self) -> usize {
        self.stages.len()
    }
    fn stem_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.apply(&self.stem)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        let mut h = h.shallow_clone();
        for b in &self.stages[i] {
            h = b.forward_t(&h, train);
        }
        if i + 1 == self.stages.len() {
            h = leaky_relu(&h.apply_t(&self.final_bn, train));
        }
        h
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        self.head.classify(pooled)
    }
    fn stage_channels(&self) -> Vec<i64> {
        self.channels.clone()
    }
    fn in_channels(&self) -> i64 {
        self.in_channels
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
}
