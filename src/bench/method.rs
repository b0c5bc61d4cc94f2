//! The methods the bench times, by the names `samix bench --methods` takes.
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Vanilla,
    Mixup,
    Cutmix,
    /// The online SAMix step (EMA critic, two Mixer calls, four encoder passes, EMA update).
    Samix,
    /// SAMix-P: a frozen encoder and Mixer (freshly initialised: the cost does not depend on the
    /// weights) mix each batch for a plain classifier step.
    SamixP,
    /// A MoCo v2 step on two views of the batch (the work of bench/torch_moco_ref.py): momentum
    /// update, query pass, key pass in 4 shuffled sub-batches, InfoNCE against a 65,536-key queue,
    /// backward, SGD 0.03/0.9/1e-4, enqueue.
    Moco,
    /// The SAMix-SSL step: MoCo v2 plus the key pass of both views, two Mixer calls, a query pass
    /// of the backbone-branch images and a key-side pass of the Mixer-branch images.
    MocoSamix,
}

impl Method {
    /// What `samix bench` times by default.
    pub const ALL: [Method; 4] = [Method::Vanilla, Method::Mixup, Method::Cutmix, Method::Samix];
    /// Every method it can time.
    pub const KNOWN: [Method; 7] = [
        Method::Vanilla,
        Method::Mixup,
        Method::Cutmix,
        Method::Samix,
        Method::SamixP,
        Method::Moco,
        Method::MocoSamix,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Mixup => "mixup",
            Method::Cutmix => "cutmix",
            Method::Samix => "samix",
            Method::SamixP => "samix_p",
            Method::Moco => "moco",
            Method::MocoSamix => "moco_samix",
        }
    }
    pub fn from_name(name: &str) -> Result<Method> {
        Method::KNOWN.into_iter().find(|m| m.name() == name).ok_or_else(|| {
            Error::Argument(format!(
                "bench method `{name}`: expected vanilla, mixup, cutmix, samix, samix_p, moco or moco_samix"
            ))
        })
    }
}

/// The network and input size the steps are timed on (`samix bench --model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BenchModel {
    /// ResNet-18 with the CIFAR stem on 32×32 images, 100 classes (the reference's CIFAR-100 step).
    #[default]
    CifarResnet18,
    /// ResNet-50 with the ImageNet stem on 224×224 images, 1,000 classes (the ImageNet step).
    ImagenetResnet50,
    /// DeiT-S on 224×224 images, 1,000 classes; SAMix's Mixer on block 6 (14×14×384, ×16 nearest).
    DeitSmall,
    /// ConvNeXt-T (patchify stem) on 224×224 images, 1,000 classes; the Mixer on stage 3.
    ConvnextTiny,
}

impl BenchModel {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "cifar-r18" => Ok(BenchModel::CifarResnet18),
            "imagenet-r50" => Ok(BenchModel::ImagenetResnet50),
            "deit-s" => Ok(BenchModel::DeitSmall),
            "convnext-t" => Ok(BenchModel::ConvnextTiny),
            other => Err(Error::Argument(format!(
                "unknown --model `{other}` (cifar-r18, imagenet-r50, deit-s or convnext-t)"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::CifarResnet18 => "cifar-r18",
            BenchModel::ImagenetResnet50 => "imagenet-r50",
            BenchModel::DeitSmall => "deit-s",
            BenchModel::ConvnextTiny => "convnext-t",
        }
    }
    pub fn config(self) -> crate::model::ModelConfig {
        use crate::model::{Arch, ModelConfig, Stem};
        match self {
            BenchModel::CifarResnet18 => ModelConfig::new(Arch::Resnet18),
            BenchModel::ImagenetResnet50 => ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::Resnet50) },
            BenchModel::DeitSmall => ModelConfig::new(Arch::DeitSmall),
            BenchModel::ConvnextTiny => ModelConfig { stem: Stem::Imagenet, ..ModelConfig::new(Arch::ConvnextTiny) },
        }
    }
    /// The SAMix settings of the step: the CIFAR-100 R18 defaults, with the Mixer on DeiT-S's
    /// block 6 (nearest up-sampling, as the reference's ViT configs).
    pub fn samix_options(self) -> crate::samix::SamixOptions {
        let mut options = crate::samix::SamixOptions::samix();
        if self == BenchModel::DeitSmall {
            options.mask_stage = 5;
            options.mixer.upsample = Some(crate::samix::Upsample::Nearest);
        }
        options
    }
    /// The input side in pixels.
    pub fn size(self) -> i64 {
        match self {
            BenchModel::CifarResnet18 => 32,
            _ => 224,
        }
    }
    pub fn classes(self) -> i64 {
        match self {
            BenchModel::CifarResnet18 => 100,
            _ => 1000,
        }
    }
}
