//! Wide ResNet (pre-activation wide basic blocks, three stages). WRN-28-8 on CIFAR: 4 blocks per
//! stage, widths 128/256/512, strides 1/2/2, no dropout. The final BN + ReLU is part of the last
//! stage, so that stage's output is exactly what the classifier pools.
use super::{conv, norm, LinearHead, Norm, NormChoice, StagedNet};
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
            norm: NormChoice::default(),
        }
    }
}

#[derive(Debug)]
pub struct WideBlock {
    bn1: Norm,
    conv1: nn::Conv2D,
    bn2: Norm,
    conv2: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
}

impl WideBlock {
    pub fn new(path: &nn::Path, cin: i64, cout: i64, stride: i64, choice: NormChoice) -> Self {
        WideBlock {
            bn1: norm(path / "bn1", cin, 1.0, choice),
            conv1: conv(path / "conv1", cin, cout, 3, stride, 1),
            bn2: norm(path / "bn2", cout, 1.0, choice),
            conv2: conv(path / "conv2", cout, cout, 3, 1, 1),
            shortcut: (cin != cout || stride != 1).then(|| conv(path / "shortcut", cin, cout, 1, stride, 1)),
        }
    }
}

impl ModuleT for WideBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let pre = x.apply_t(&self.bn1, train).relu();
        // With a projection, the shortcut reads the pre-activated input (as the original WRN).
        let skip = match &self.shortcut {
            Some(s) => pre.apply(s),
            None => x.shallow_clone(),
        };
        pre.apply(&self.conv1).apply_t(&self.bn2, train).relu().apply(&self.conv2) + skip
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
        let stem = conv(path / "conv1", cfg.in_channels, cfg.base_width, 3, 1, 1);
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
            h = h.apply_t(&self.final_bn, train).relu();
        }
        h
    }
    fn head(&self, h: &Tensor) -> Tensor {
        h.apply(&self.head)
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
