//! How big the network a `[model]` table builds would be, estimated from the table alone before
//! anything is allocated: its parameters (the convolutions, which hold nearly all of them) and
//! the bytes of its largest activation, the first stage's feature map (a transformer's MLP
//! activation or attention matrix). [`check`] refuses either above the limits of
//! [`crate::limits`], naming the keys that sized it.
use super::config::{Arch, Family, ModelConfig, Stem};
use super::convnext::ConvNextConfig;
use super::resnet::{BlockKind, ResNetConfig};
use super::swin::SwinConfig;
use super::vit::VitConfig;
use super::wrn::WideResNetConfig;
use crate::limits::{check_parameters, check_tensor_bytes};
use crate::Result;

/// The keys that size a network, as errors name them.
const KEYS: &str = "model.base_width, model.blocks, model.depth, model.patch_size";

/// Stage by stage: the blocks and their (input → inner → output) channels; the stem's channels
/// and its downsampling (spatial stride before the first stage).
struct Shape {
    stem_channels: u64,
    stem_stride: u64,
    /// Per stage: (blocks, output channels, inner width of a bottleneck or 0 for a basic block,
    /// groups of the inner 3×3 convolution).
    stages: Vec<(u64, u64, u64, u64)>,
}

fn shape(cfg: &ModelConfig) -> Shape {
    let blocks =
        |preset: &[usize]| -> Vec<u64> { cfg.blocks.as_deref().unwrap_or(preset).iter().map(|&b| b as u64).collect() };
    match cfg.arch {
        Arch::Wrn28_8 => {
            let p = WideResNetConfig::wrn28_8(3, 10);
            let base = cfg.base_width.unwrap_or(p.base_width).max(1) as u64;
            let widen = p.widen as u64;
            let stages =
                blocks(&p.blocks).into_iter().enumerate().map(|(i, n)| (n, (base * widen) << i, 0, 1)).collect();
            Shape { stem_channels: base, stem_stride: 1, stages }
        }
        arch => {
            let p = ResNetConfig::preset(arch, cfg.stem, 3, 10);
            let base = cfg.base_width.unwrap_or(p.base_width).max(1) as u64;
            let stages = blocks(&p.blocks)
                .into_iter()
                .enumerate()
                .map(|(i, n)| {
                    let planes = base << i;
                    match p.block {
                        BlockKind::Basic => (n, planes, 0, 1),
                        BlockKind::Bottleneck => {
                            let inner = planes * p.width_per_group as u64 / 64 * p.groups as u64;
                            (n, planes * 4, inner.max(1), p.groups as u64)
                        }
                    }
                })
                .collect();
            let stem_stride = if cfg.stem == Stem::Imagenet { 4 } else { 1 };
            Shape { stem_channels: base, stem_stride, stages }
        }
    }
}

/// The ViT a table builds (the DeiT-S preset where its keys disagree: Network::new refuses it).
fn vit(cfg: &ModelConfig) -> VitConfig {
    cfg.vit_config(3, 10).unwrap_or_else(|_| VitConfig::deit_small(3, 10))
}

/// A ViT's parameters: 12·D² per block (qkv, projection, a 4× MLP), the patch embedding and the
/// position embedding.
fn vit_parameters(v: &VitConfig) -> u64 {
    let d = v.embed_dim.max(1) as u64;
    let tokens = (v.grid().max(1) as u64).saturating_pow(2).saturating_add(1);
    let hidden = (v.embed_dim as f64 * v.mlp_ratio).max(1.0) as u64;
    let block = d.saturating_mul(3 * d + d + 2 * hidden);
    let patch = (v.patch_size.max(1) as u64).saturating_pow(2).saturating_mul(3).saturating_mul(d);
    block.saturating_mul(v.depth as u64).saturating_add(patch).saturating_add(tokens.saturating_mul(d))
}

/// The Swin a table builds (Swin-T where its keys disagree: Network::new refuses it).
fn swin(cfg: &ModelConfig) -> SwinConfig {
    cfg.swin_config(3, 10).unwrap_or_else(|_| SwinConfig::tiny(3, 10))
}

/// Swin's parameters: 12·C² per block at each stage's width, the merging layers (8·C² each) and
/// the patch embedding.
fn swin_parameters(s: &SwinConfig) -> u64 {
    let mut total =
        (s.patch_size.max(1) as u64).saturating_pow(2).saturating_mul(3).saturating_mul(s.embed_dim.max(1) as u64);
    for (i, &depth) in s.depths.iter().enumerate() {
        let c = (s.embed_dim.max(1) as u64) << i.min(32);
        total = total.saturating_add(c.saturating_mul(c).saturating_mul(12).saturating_mul(depth as u64));
        if i > 0 {
            total = total.saturating_add(c.saturating_mul(c).saturating_mul(2));
        }
    }
    total
}

/// ConvNeXt's parameters: 8·C² + 49·C per block, the downsampling convolutions and the stem.
fn convnext_parameters(c: &ConvNextConfig) -> u64 {
    let mut total = (c.stem_kernel.max(1) as u64).saturating_pow(2).saturating_mul(3).saturating_mul(c.dims[0] as u64);
    for (s, (&depth, &dim)) in c.depths.iter().zip(&c.dims).enumerate() {
        let dim = dim.max(1) as u64;
        let block = dim.saturating_mul(dim).saturating_mul(8).saturating_add(49 * dim);
        total = total.saturating_add(block.saturating_mul(depth as u64));
        if s > 0 {
            total = total.saturating_add(4u64.saturating_mul(c.dims[s - 1] as u64).saturating_mul(dim));
        }
    }
    total
}

/// The parameters of the network's convolutions (its shortcuts and classifier aside: an estimate
/// within a few per cent for the architectures here; ResNet-18: 11.0 M of 11.2 M), or of a
/// transformer's or ConvNeXt's layers.
pub fn estimated_parameters(cfg: &ModelConfig) -> u64 {
    match cfg.arch.family() {
        Family::Vit => return vit_parameters(&vit(cfg)),
        Family::ConvNext => return convnext_parameters(&cfg.convnext_config(3, 10)),
        Family::Swin => return swin_parameters(&swin(cfg)),
        Family::ResNet | Family::Wide => {}
    }
    let s = shape(cfg);
    let mut cin = s.stem_channels;
    let mut total = 49u64.saturating_mul(3).saturating_mul(cin);
    for &(blocks, out, inner, groups) in &s.stages {
        let first_in = cin;
        let per_block = |cin: u64| -> u64 {
            if inner == 0 {
                9u64.saturating_mul(cin.saturating_mul(out).saturating_add(out.saturating_mul(out)))
            } else {
                let middle = 9u64.saturating_mul(inner.saturating_mul(inner)) / groups.max(1);
                cin.saturating_mul(inner).saturating_add(middle).saturating_add(inner.saturating_mul(out))
            }
        };
        total = total.saturating_add(per_block(first_in));
        total = total.saturating_add(per_block(out).saturating_mul(blocks.saturating_sub(1)));
        cin = out;
    }
    total
}

/// The channels of the network's last feature map (what a classifier or an SSL neck reads).
pub fn feature_channels(cfg: &ModelConfig) -> u64 {
    match cfg.arch.family() {
        Family::Vit => return vit(cfg).embed_dim.max(1) as u64,
        Family::ConvNext => return cfg.convnext_config(3, 10).dims.last().map_or(1, |&d| d.max(1) as u64),
        Family::Swin => {
            let s = swin(cfg);
            return (s.embed_dim.max(1) as u64) << s.depths.len().saturating_sub(1).min(32);
        }
        Family::ResNet | Family::Wide => {}
    }
    let s = shape(cfg);
    s.stages.last().map_or(s.stem_channels, |st| st.1)
}

/// The bytes (f32) of the largest activation of one batch of `batch` images of side `side`: the
/// stem's output or the first stage's, whichever is larger.
pub fn largest_activation_bytes(cfg: &ModelConfig, side: u64, batch: u64) -> u64 {
    match cfg.arch.family() {
        Family::Vit => {
            // The MLP's hidden activation or the attention matrix, whichever is larger.
            let v = vit(cfg);
            let tokens = (side / v.patch_size.max(1) as u64).saturating_pow(2).saturating_add(1);
            let mlp = tokens.saturating_mul((v.embed_dim as f64 * v.mlp_ratio).max(1.0) as u64);
            let attention = tokens.saturating_mul(tokens).saturating_mul(v.num_heads.max(1) as u64);
            return mlp.max(attention).saturating_mul(batch).saturating_mul(4);
        }
        Family::ConvNext => {
            // The first stage's MLP: four times its width on the stem's grid.
            let c = cfg.convnext_config(3, 10);
            let grid = side.div_ceil(c.stem_stride.max(1) as u64).saturating_pow(2);
            return grid.saturating_mul(4 * c.dims[0].max(1) as u64).saturating_mul(batch).saturating_mul(4);
        }
        Family::Swin => {
            // The first stage's MLP activation, or its windows' attention matrices.
            let s = swin(cfg);
            let tokens = (side / s.patch_size.max(1) as u64).saturating_pow(2);
            let mlp = tokens.saturating_mul(4 * s.embed_dim.max(1) as u64);
            let attention =
                tokens.saturating_mul((s.window.max(1) as u64).saturating_pow(2)).saturating_mul(s.heads.max(1) as u64);
            return mlp.max(attention).saturating_mul(batch).saturating_mul(4);
        }
        Family::ResNet | Family::Wide => {}
    }
    let s = shape(cfg);
    let stem_side = if s.stem_stride > 1 { side.div_ceil(2) } else { side };
    let stage_side = side.div_ceil(s.stem_stride);
    let stem = s.stem_channels.saturating_mul(stem_side.saturating_mul(stem_side));
    let first = s.stages.first().map_or(0, |st| st.1.saturating_mul(stage_side.saturating_mul(stage_side)));
    stem.max(first).saturating_mul(batch).saturating_mul(4)
}

/// Refuses a network above [`crate::limits::MAX_PARAMETERS`] parameters (with the parameters of
/// an SSL neck, `neck`), or whose largest activation for `batch` images of side `side` is above
/// [`crate::limits::MAX_TENSOR_BYTES`]; `batch_key` names the batch's key.
pub fn check(cfg: &ModelConfig, neck: Option<u64>, side: u64, batch: u64, batch_key: &str) -> Result<()> {
    let parameters = estimated_parameters(cfg).saturating_add(neck.unwrap_or(0));
    match neck {
        Some(_) => check_parameters(&format!("{KEYS}, ssl.hidden_dim, ssl.feature_dim"), parameters)?,
        None => check_parameters(KEYS, parameters)?,
    }
    let keys = format!("{KEYS}, data.augment.image_size, {batch_key}");
    check_tensor_bytes(&keys, "one batch of the first stage's feature map", largest_activation_bytes(cfg, side, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimates_are_close_to_the_networks() {
        let mb = |arch| estimated_parameters(&ModelConfig::new(arch)) as f64 / 1e6;
        assert!((10.5..12.0).contains(&mb(Arch::Resnet18)), "{}", mb(Arch::Resnet18));
        assert!((20.0..26.0).contains(&mb(Arch::Resnet50)), "{}", mb(Arch::Resnet50));
        assert!((20.0..25.0).contains(&mb(Arch::Resnext50_32x4d)), "{}", mb(Arch::Resnext50_32x4d));
        assert!((20.0..37.0).contains(&mb(Arch::Wrn28_8)), "{}", mb(Arch::Wrn28_8));
        // timm's counts: DeiT-T 5.7 M, DeiT-S 22.1 M, DeiT-B 86.6 M, ConvNeXt-T 28.6 M.
        assert!((5.4..5.8).contains(&mb(Arch::DeitTiny)), "{}", mb(Arch::DeitTiny));
        assert!((21.0..22.2).contains(&mb(Arch::DeitSmall)), "{}", mb(Arch::DeitSmall));
        assert!((84.0..86.7).contains(&mb(Arch::DeitBase)), "{}", mb(Arch::DeitBase));
        assert!((27.0..28.7).contains(&mb(Arch::ConvnextTiny)), "{}", mb(Arch::ConvnextTiny));
        // timm's Swin-T: 28.3 M.
        assert!((26.5..28.4).contains(&mb(Arch::SwinTiny)), "{}", mb(Arch::SwinTiny));
        let huge = ModelConfig { base_width: Some(100_000_000), ..ModelConfig::new(Arch::Resnet18) };
        assert!(check(&huge, None, 32, 100, "train.batch_size").is_err());
        let imagenet = ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::Resnet50) };
        assert!(check(&imagenet, None, 224, 1024, "train.batch_size").is_ok());
        // The CIFAR stem keeps 224 px through the first stage: 52 GB at that batch.
        assert!(check(&ModelConfig::new(Arch::Resnet50), None, 224, 1024, "train.batch_size").is_err());
    }
}
