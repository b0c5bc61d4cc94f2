//! Image classifiers: ResNet-18/34/50/101 and ResNeXt-50 32x4d (CIFAR or ImageNet stem),
//! WRN-28-8, the DeiT vision transformers, ConvNeXt and Swin. Every network runs stage by stage ([`StagedNet`]), so callers can read any stage's
//! output (SAMix's Mixer reads stage 3) or mix hidden features between stages (ManifoldMix).
//! Touches only its own parameters.
pub mod config;
pub mod convnext;
pub mod interop;
pub mod layers;
pub mod resnet;
pub mod size;
pub mod staged;
pub mod swin;
pub mod transformer_layers;
pub mod vit;
pub mod wrn;

use crate::Result;
use tch::{nn, Tensor};

pub use config::{Arch, Family, ModelConfig, NormKind, Stem};
pub use convnext::{ConvNext, ConvNextConfig};
pub use layers::{batch_norm, conv, conv_with, norm, LinearHead, Norm, NormChoice};
pub use resnet::{ResNet, ResNetConfig};
pub use staged::StagedNet;
pub use swin::{SwinConfig, SwinTransformer};
pub use vit::{VisionTransformer, VitConfig};
pub use wrn::{WideResNet, WideResNetConfig};

/// Any supported architecture.
pub enum Network {
    ResNet(ResNet),
    Wide(WideResNet),
    Vit(VisionTransformer),
    ConvNext(ConvNext),
    Swin(SwinTransformer),
}

impl Network {
    /// Builds the architecture a config names for `in_channels`-channel images and `num_classes`.
    pub fn new(path: &nn::Path, cfg: &ModelConfig, in_channels: i64, num_classes: i64) -> Result<Network> {
        Ok(match cfg.arch.family() {
            Family::Wide => {
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
            Family::Vit => Network::Vit(VisionTransformer::new(path, &cfg.vit_config(in_channels, num_classes)?)),
            Family::ConvNext => Network::ConvNext(ConvNext::new(path, &cfg.convnext_config(in_channels, num_classes))),
            Family::Swin => Network::Swin(SwinTransformer::new(path, &cfg.swin_config(in_channels, num_classes)?)),
            Family::ResNet => {
                let mut rc = ResNetConfig::preset(cfg.arch, cfg.stem, in_channels, num_classes);
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
            Network::Vit(n) => n,
            Network::ConvNext(n) => n,
            Network::Swin(n) => n,
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
    fn pool(&self, h: &Tensor) -> Tensor {
        self.inner().pool(h)
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        self.inner().classifier(pooled)
    }
    fn head(&self, h: &Tensor) -> Tensor {
        self.inner().head(h)
    }
    fn stage_map(&self, i: usize, h: &Tensor) -> Tensor {
        self.inner().stage_map(i, h)
    }
    fn forward_with_class_attention(&self, x: &Tensor, train: bool) -> Option<(Tensor, Tensor)> {
        self.inner().forward_with_class_attention(x, train)
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
