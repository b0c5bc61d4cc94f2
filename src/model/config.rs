//! The `[model]` table of a run: architecture, stem, width and depth overrides, and the
//! transformer's shape keys. Also what each architecture calls its input and classifier layers.
use super::convnext::ConvNextConfig;
use super::swin::SwinConfig;
use super::vit::VitConfig;
use crate::limits::{check_size, check_sizes, MAX_BLOCKS_PER_STAGE, MAX_WIDTH};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
    Resnext50_32x4d,
    Wrn28_8,
    DeitTiny,
    DeitSmall,
    DeitBase,
    ConvnextTiny,
    SwinTiny,
}

/// The kinds of network, each with its own module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    ResNet,
    Wide,
    Vit,
    ConvNext,
    Swin,
}

impl Arch {
    pub fn family(self) -> Family {
        match self {
            Arch::Wrn28_8 => Family::Wide,
            Arch::DeitTiny | Arch::DeitSmall | Arch::DeitBase => Family::Vit,
            Arch::ConvnextTiny => Family::ConvNext,
            Arch::SwinTiny => Family::Swin,
            _ => Family::ResNet,
        }
    }

    /// The weight of the layer that reads the images (its dimension 1 is the input channels).
    pub fn input_weight(self) -> &'static str {
        match self.family() {
            Family::ResNet | Family::Wide => "conv1.weight",
            Family::Vit | Family::Swin => "patch_embed.proj.weight",
            Family::ConvNext => "stem.0.weight",
        }
    }

    /// The prefix of the linear classifier's variables (what fine-tuning starts afresh).
    pub fn classifier_prefix(self) -> &'static str {
        match self.family() {
            Family::ResNet | Family::Wide => "fc.",
            Family::Vit => "head.",
            Family::ConvNext | Family::Swin => "head.fc.",
        }
    }

    /// The classifier's weight (its dimension 0 is the classes).
    pub fn classifier_weight(self) -> String {
        format!("{}weight", self.classifier_prefix())
    }
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

/// The normalisation layers of a network (`model.norm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm (the architectures' own): statistics of each (per-process) batch.
    #[default]
    Batch,
    /// GroupNorm: statistics of each image's channel groups, so the result does not depend on
    /// the batch or on how data-parallel processes split it (small per-GPU batches).
    Group,
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
    #[serde(default)]
    pub norm: NormKind,
    /// GroupNorm's groups: each layer of `c` channels uses the largest divisor of `c` not above
    /// this (32 as in Wu & He, 2018).
    #[serde(default = "default_norm_groups")]
    pub norm_groups: i64,
    /// Transformer blocks of a ViT (DeiT: 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Attention heads of a ViT (DeiT-T/S/B: 3/6/12), or of Swin's first stage (3, doubling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<i64>,
    /// A ViT's patch side (16) or Swin's (4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_size: Option<i64>,
    /// The image side a ViT or Swin is built for (the position embedding's grid, Swin's
    /// attention masks); must equal the data's (`data.augment.image_size`). Default 224.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<i64>,
    /// Swin's attention window side (7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Stochastic depth of the transformers and ConvNeXt: the last block's drop-path
    /// probability, earlier blocks' rising linearly from 0. Default 0 (timm's); the
    /// reference's configs set 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_path: Option<f64>,
    /// Start from these weights (a samix weights file; `samix convert` writes one from a
    /// torchvision or timm ResNet), all but the classifier, which starts fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
}

fn default_norm_groups() -> i64 {
    32
}

impl ModelConfig {
    /// `arch` with its own stem default, width and depth.
    pub fn new(arch: Arch) -> Self {
        ModelConfig {
            arch,
            stem: Stem::default(),
            base_width: None,
            blocks: None,
            norm: NormKind::Batch,
            norm_groups: default_norm_groups(),
            depth: None,
            heads: None,
            patch_size: None,
            image_size: None,
            window: None,
            drop_path: None,
            init_from: None,
        }
    }

    /// Stages of the network this table builds: the ResNets' 4, WRN's 3, ConvNeXt's 4, one per
    /// block of a ViT.
    pub fn num_stages(&self) -> usize {
        match self.arch.family() {
            Family::Wide => self.blocks.as_ref().map_or(3, Vec::len),
            Family::Vit => self.depth.unwrap_or(12),
            Family::Swin => self.blocks.as_ref().map_or(4, Vec::len),
            Family::ResNet | Family::ConvNext => 4,
        }
    }

    /// Range checks of this table; errors name the key. How big the network these make is checked
    /// with the data and the batch ([`crate::model::size::check`]).
    pub fn check(&self) -> Result<()> {
        if self.norm_groups < 1 {
            return Err(Error::config("model.norm_groups", "must be at least 1"));
        }
        if self.base_width.is_some_and(|w| w < 1) {
            return Err(Error::config("model.base_width", "must be at least 1"));
        }
        self.check_family_keys()?;
        if let Some(blocks) = &self.blocks {
            let stages = self.num_stages();
            if blocks.len() != stages || blocks.iter().any(|&b| b < 1) {
                return Err(Error::config("model.blocks", format!("must list {stages} positive block counts")));
            }
            check_sizes("model.blocks", blocks, MAX_BLOCKS_PER_STAGE)?;
        }
        if let Some(w) = self.base_width {
            check_size("model.base_width", w, MAX_WIDTH)?;
        }
        Ok(())
    }

    /// Keys that only some families read are refused where they would be ignored, and the
    /// transformer's shape keys checked against each other.
    fn check_family_keys(&self) -> Result<()> {
        let family = self.arch.family();
        let vit = family == Family::Vit;
        let transformer = matches!(family, Family::Vit | Family::Swin);
        let layer_normed = matches!(family, Family::Vit | Family::ConvNext | Family::Swin);
        let unread: &[(&str, bool)] = &[
            ("model.depth", self.depth.is_some() && !vit),
            ("model.heads", self.heads.is_some() && !transformer),
            ("model.image_size", self.image_size.is_some() && !transformer),
            ("model.patch_size", self.patch_size.is_some() && !transformer),
            ("model.window", self.window.is_some() && family != Family::Swin),
            ("model.drop_path", self.drop_path.is_some() && !layer_normed),
            ("model.blocks", self.blocks.is_some() && vit),
            ("model.norm", self.norm != NormKind::Batch && layer_normed),
        ];
        if let Some((key, _)) = unread.iter().find(|(_, refused)| *refused) {
            let msg =
                format!("is not read by {:?} networks (they use LayerNorm; a ViT's depth is model.depth)", family);
            return Err(Error::config(*key, msg));
        }
        if self.drop_path.is_some_and(|p| !(0.0..1.0).contains(&p)) {
            return Err(Error::config("model.drop_path", "must be in [0, 1)"));
        }
        let sizes = [
            ("model.heads", self.heads),
            ("model.patch_size", self.patch_size),
            ("model.image_size", self.image_size),
            ("model.window", self.window),
        ];
        for (key, v) in sizes {
            if let Some(v) = v {
                if v < 1 {
                    return Err(Error::config(key, "must be at least 1"));
                }
                check_size(key, v, MAX_WIDTH)?;
            }
        }
        if let Some(d) = self.depth {
            if d < 1 {
                return Err(Error::config("model.depth", "must be at least 1"));
            }
            check_size("model.depth", d, MAX_BLOCKS_PER_STAGE)?;
        }
        Ok(())
    }

    /// The ViT a `[model]` table names: the DeiT preset with `base_width` (the embedding width),
    /// `depth`, `heads`, `patch_size`, `image_size` and `drop_path` over it.
    pub fn vit_config(&self, in_channels: i64, num_classes: i64) -> Result<VitConfig> {
        let cfg = self;
        let mut vc = match cfg.arch {
            Arch::DeitTiny => VitConfig::deit_tiny(in_channels, num_classes),
            Arch::DeitBase => VitConfig::deit_base(in_channels, num_classes),
            _ => VitConfig::deit_small(in_channels, num_classes),
        };
        vc.embed_dim = cfg.base_width.unwrap_or(vc.embed_dim);
        vc.depth = cfg.depth.unwrap_or(vc.depth);
        vc.num_heads = cfg.heads.unwrap_or(vc.num_heads);
        vc.patch_size = cfg.patch_size.unwrap_or(vc.patch_size);
        vc.image_size = cfg.image_size.unwrap_or(vc.image_size);
        vc.drop_path = cfg.drop_path.unwrap_or(0.0);
        check_heads_divide(vc.embed_dim, vc.num_heads)?;
        if vc.image_size % vc.patch_size != 0 {
            let msg = format!("the patch side {} does not divide the image side {}", vc.patch_size, vc.image_size);
            return Err(Error::config("model.patch_size", msg));
        }
        Ok(vc)
    }

    /// The ConvNeXt a `[model]` table names: ConvNeXt-T with `base_width` (the first stage's
    /// width, doubling per stage), `blocks`, `stem` (the ImageNet stem patchifies 4×4; the
    /// CIFAR one is the reference's `ConvNeXt_CIFAR` 3×3 stride-1 stem) and `drop_path` over it.
    pub fn convnext_config(&self, in_channels: i64, num_classes: i64) -> ConvNextConfig {
        let cfg = self;
        let mut cc = ConvNextConfig::tiny(in_channels, num_classes);
        if let Some(w) = cfg.base_width {
            cc.dims = (0..cc.dims.len()).map(|i| w << i).collect();
        }
        if let Some(b) = &cfg.blocks {
            cc.depths = b.clone();
        }
        if cfg.stem == Stem::Cifar {
            (cc.stem_kernel, cc.stem_stride) = (3, 1);
        }
        cc.drop_path = cfg.drop_path.unwrap_or(0.0);
        cc
    }

    /// The Swin a `[model]` table names: Swin-T with `base_width` (the first stage's width),
    /// `heads` (the first stage's), `blocks`, `patch_size`, `window`, `image_size` and
    /// `drop_path` over it; every stage's side must be a multiple of its window.
    pub fn swin_config(&self, in_channels: i64, num_classes: i64) -> Result<SwinConfig> {
        let mut sc = SwinConfig::tiny(in_channels, num_classes);
        sc.embed_dim = self.base_width.unwrap_or(sc.embed_dim);
        sc.heads = self.heads.unwrap_or(sc.heads);
        sc.depths = self.blocks.clone().unwrap_or(sc.depths);
        sc.patch_size = self.patch_size.unwrap_or(sc.patch_size);
        sc.window = self.window.unwrap_or(sc.window);
        sc.image_size = self.image_size.unwrap_or(sc.image_size);
        sc.drop_path = self.drop_path.unwrap_or(0.0);
        check_heads_divide(sc.embed_dim, sc.heads)?;
        let sides = sc.resolutions();
        if sc.image_size % sc.patch_size != 0 || sides.iter().any(|&r| r < 1 || r % sc.window.min(r) != 0) {
            let msg = format!(
                "the stages' sides {sides:?} (model.image_size / model.patch_size, halving) must be multiples of the window {}",
                sc.window
            );
            return Err(Error::config("model.window", msg));
        }
        Ok(sc)
    }
}

/// A transformer's width must split evenly over its attention heads.
fn check_heads_divide(width: i64, heads: i64) -> Result<()> {
    if heads < 1 || width % heads != 0 {
        let msg = format!("{heads} heads do not divide the width {width} (model.base_width)");
        return Err(Error::config("model.heads", msg));
    }
    Ok(())
}
