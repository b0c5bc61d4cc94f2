//! ResNet / ResNeXt with torchvision's layout (stride on the 3×3 conv, 1×1-conv + BN shortcut),
//! a CIFAR stem (3×3, stride 1, no max-pool) or an ImageNet stem (7×7 stride 2 + max-pool),
//! Kaiming fan-out init and zero-initialised last BN γ in every block.
use super::config::{Arch, Stem};
use super::layers::{conv, norm, LinearHead, Norm, NormChoice};
use super::staged::StagedNet;
use tch::{nn, nn::ModuleT, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Basic,
    Bottleneck,
}

impl BlockKind {
    fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ResNetConfig {
    pub block: BlockKind,
    pub blocks: Vec<usize>,
    pub base_width: i64,
    pub groups: i64,
    pub width_per_group: i64,
    pub stem: Stem,
    pub in_channels: i64,
    pub num_classes: i64,
    pub norm: NormChoice,
}

impl ResNetConfig {
    pub fn preset(arch: Arch, stem: Stem, in_channels: i64, num_classes: i64) -> Self {
        let (block, blocks, groups, width_per_group) = match arch {
            Arch::Resnet18 => (BlockKind::Basic, vec![2, 2, 2, 2], 1, 64),
            Arch::Resnet34 => (BlockKind::Basic, vec![3, 4, 6, 3], 1, 64),
            Arch::Resnet50 => (BlockKind::Bottleneck, vec![3, 4, 6, 3], 1, 64),
            Arch::Resnet101 => (BlockKind::Bottleneck, vec![3, 4, 23, 3], 1, 64),
            // ResNeXt-50 32x4d; other families never ask for a ResNet preset.
            _ => (BlockKind::Bottleneck, vec![3, 4, 6, 3], 32, 4),
        };
        ResNetConfig {
            block,
            blocks,
            base_width: 64,
            groups,
            width_per_group,
            stem,
            in_channels,
            num_classes,
            norm: NormChoice::default(),
        }
    }
}

/// Conv → BN, the projection shortcut.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: Norm,
}

impl ConvBn {
    pub fn new(path: &nn::Path, cin: i64, cout: i64, stride: i64, choice: NormChoice) -> Self {
        ConvBn { conv: conv(path / "0", cin, cout, 1, stride, 1), bn: norm(path / "1", cout, 1.0, choice) }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// Shape of one residual block.
#[derive(Clone, Copy, Debug)]
pub struct BlockConfig {
    pub in_channels: i64,
    pub planes: i64,
    pub stride: i64,
    pub groups: i64,
    pub width_per_group: i64,
    pub norm: NormChoice,
}

#[derive(Debug)]
pub struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: Norm,
    conv2: nn::Conv2D,
    bn2: Norm,
    shortcut: Option<ConvBn>,
}

impl BasicBlock {
    pub fn new(path: &nn::Path, c: &BlockConfig) -> Self {
        let shortcut = (c.stride != 1 || c.in_channels != c.planes)
            .then(|| ConvBn::new(&(path / "downsample"), c.in_channels, c.planes, c.stride, c.norm));
        BasicBlock {
            conv1: conv(path / "conv1", c.in_channels, c.planes, 3, c.stride, 1),
            bn1: norm(path / "bn1", c.planes, 1.0, c.norm),
            conv2: conv(path / "conv2", c.planes, c.planes, 3, 1, 1),
            bn2: norm(path / "bn2", c.planes, 0.0, c.norm),
            shortcut,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train);
        let skip = match &self.shortcut {
            Some(s) => s.forward_t(x, train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

#[derive(Debug)]
pub struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: Norm,
    conv2: nn::Conv2D,
    bn2: Norm,
    conv3: nn::Conv2D,
    bn3: Norm,
    shortcut: Option<ConvBn>,
}

impl Bottleneck {
    pub fn new(path: &nn::Path, c: &BlockConfig) -> Self {
        // torchvision's width rule: planes · (width_per_group / 64) · groups.
        let width = ((c.planes * c.width_per_group) / 64).max(1) * c.groups;
        let out = c.planes * BlockKind::Bottleneck.expansion();
        let shortcut = (c.stride != 1 || c.in_channels != out)
            .then(|| ConvBn::new(&(path / "downsample"), c.in_channels, out, c.stride, c.norm));
        Bottleneck {
            conv1: conv(path / "conv1", c.in_channels, width, 1, 1, 1),
            bn1: norm(path / "bn1", width, 1.0, c.norm),
            conv2: conv(path / "conv2", width, width, 3, c.stride, c.groups),
            bn2: norm(path / "bn2", width, 1.0, c.norm),
            conv3: conv(path / "conv3", width, out, 1, 1, 1),
            bn3: norm(path / "bn3", out, 0.0, c.norm),
            shortcut,
        }
    }
}

impl ModuleT for Bottleneck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv3)
            .apply_t(&self.bn3, train);
        let skip = match &self.shortcut {
            Some(s) => s.forward_t(x, train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    }
}

#[derive(Debug)]
// A handful are built per run and each call dispatches once; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum ResBlock {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

impl ModuleT for ResBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            ResBlock::Basic(b) => b.forward_t(x, train),
            ResBlock::Bottleneck(b) => b.forward_t(x, train),
        }
    }
}

#[derive(Debug)]
pub struct ResNetStem {
    conv: nn::Conv2D,
    bn: Norm,
    max_pool: bool,
}

impl ResNetStem {
    pub fn new(path: &nn::Path, stem: Stem, in_channels: i64, width: i64, choice: NormChoice) -> Self {
        let (k, stride) = match stem {
            Stem::Cifar => (3, 1),
            Stem::Imagenet => (7, 2),
        };
        ResNetStem {
            conv: conv(path / "conv1", in_channels, width, k, stride, 1),
            bn: norm(path / "bn1", width, 1.0, choice),
            max_pool: stem == Stem::Imagenet,
        }
    }
}

impl ModuleT for ResNetStem {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv).apply_t(&self.bn, train).relu();
        if self.max_pool {
            y.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
        } else {
            y
        }
    }
}

#[derive(Debug)]
pub struct ResNet {
    stem: ResNetStem,
    stages: Vec<Vec<ResBlock>>,
    head: LinearHead,
    channels: Vec<i64>,
    in_channels: i64,
    num_classes: i64,
}

impl ResNet {
    pub fn new(path: &nn::Path, cfg: &ResNetConfig) -> Self {
        let stem = ResNetStem::new(path, cfg.stem, cfg.in_channels, cfg.base_width, cfg.norm);
        let mut cin = cfg.base_width;
        let mut stages = Vec::new();
        let mut channels = Vec::new();
        for (i, &n) in cfg.blocks.iter().enumerate() {
            let planes = cfg.base_width << i;
            let stage_path = path / format!("layer{}", i + 1);
            let mut blocks = Vec::new();
            for j in 0..n {
                let bc = BlockConfig {
                    in_channels: cin,
                    planes,
                    stride: if j == 0 && i > 0 { 2 } else { 1 },
                    groups: cfg.groups,
                    width_per_group: cfg.width_per_group,
                    norm: cfg.norm,
                };
                let bp = &stage_path / j;
                blocks.push(match cfg.block {
                    BlockKind::Basic => ResBlock::Basic(BasicBlock::new(&bp, &bc)),
                    BlockKind::Bottleneck => ResBlock::Bottleneck(Bottleneck::new(&bp, &bc)),
                });
                cin = planes * cfg.block.expansion();
            }
            stages.push(blocks);
            channels.push(cin);
        }
        let head = LinearHead::new(path, cin, cfg.num_classes);
        ResNet { stem, stages, head, channels, in_channels: cfg.in_channels, num_classes: cfg.num_classes }
    }
}

impl StagedNet for ResNet {
    fn num_stages(&self) -> usize {
        self.stages.len()
    }
    fn stem_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.stem.forward_t(x, train)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        let mut h = h.shallow_clone();
        for b in &self.stages[i] {
            h = b.forward_t(&h, train);
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
