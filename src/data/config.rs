//! The `[data]` table of a run: which dataset, where it lives, how much of it, the loader's
//! workers, and the training augmentations. Every default is stated once, in the `Default`
//! impls; serde fills missing keys from them.
use crate::limits::{check_size, MAX_IMAGE_SIDE, MAX_WORKERS};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    Cifar10,
    Cifar100,
    Mnist,
    FashionMnist,
    ImageFolder,
    TinyImagenet,
    /// CUB-200-2011 in its official layout (`data.path` required).
    Cub200,
    /// FGVC-Aircraft 2013b, variants, trainval/test (`data.path` required).
    Aircraft,
    /// ImageNet-1k: `train/<wnid>/`, `val/` in class folders or flat with a label list
    /// (`data.path` required).
    Imagenet,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100 => "cifar100",
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion_mnist",
            DatasetKind::ImageFolder => "image_folder",
            DatasetKind::TinyImagenet => "tiny_imagenet",
            DatasetKind::Cub200 => "cub200",
            DatasetKind::Aircraft => "aircraft",
            DatasetKind::Imagenet => "imagenet",
        }
    }
    /// Native image side of the fixed-size datasets.
    pub fn native_size(self) -> Option<usize> {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Cifar100 => Some(32),
            DatasetKind::Mnist | DatasetKind::FashionMnist => Some(28),
            DatasetKind::TinyImagenet => Some(64),
            DatasetKind::ImageFolder | DatasetKind::Cub200 | DatasetKind::Aircraft | DatasetKind::Imagenet => None,
        }
    }
}

/// How an image is resampled to another size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Linear in each direction between the 2×2 nearest pixels.
    #[default]
    Bilinear,
    /// Cubic convolution over the 4×4 nearest pixels (Keys' kernel with a = −0.5, as PIL's
    /// bicubic filter), without PIL's widening of the kernel when shrinking.
    Bicubic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// Mirror without repeating the edge (the reference's CIFAR recipe).
    #[default]
    Reflect,
    Zeros,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// RandomCrop padding in pixels (0 = no random crop). CIFAR recipe: 4, reflect.
    pub crop_padding: usize,
    pub padding_mode: PaddingMode,
    pub hflip: bool,
    /// Output side for folder datasets (and a resize for fixed-size ones).
    pub image_size: Option<usize>,
    /// With `image_size`: RandomResizedCrop for training instead of resize + centre crop.
    pub random_resized_crop: bool,
    pub rrc_scale: [f64; 2],
    /// The random-resized crop's resampling (the reference's Tiny-ImageNet and ImageNet
    /// pipelines: bicubic).
    pub rrc_interpolation: Interpolation,
    /// Shorter side before the centre crop at test time (ImageNet recipe: 256 for 224).
    pub test_resize: Option<usize>,
    /// Colour-jitter strengths `[brightness, contrast, saturation, hue]` (MoCo v2: 0.4, 0.4, 0.4,
    /// 0.1): factors drawn from [1 − s, 1 + s] (hue: a shift in [−h, h] of a turn), applied in a
    /// random order. All zero: off.
    pub color_jitter: [f64; 4],
    /// Probability of applying the colour jitter to an image (MoCo v2: 0.8).
    pub color_jitter_p: f64,
    /// Probability of turning an image gray (MoCo v2: 0.2).
    pub grayscale_p: f64,
    /// Probability of a Gaussian blur (MoCo v2 at 224 px: 0.5; usually off at 32 px).
    pub blur_p: f64,
    /// Range of the blur's standard deviation in pixels, drawn uniformly.
    pub blur_sigma: [f64; 2],
    /// Decode a JPEG at 1/2, 1/4 or 1/8 of its size (in the DCT, as Pillow's `draft`) when the
    /// crop it is resized from is at least that many times larger than `image_size` on both
    /// sides: less decoding, and the DCT's averaging stands in for the antialiasing the resize
    /// lacks. Off: every pixel is decoded at full resolution first, as torchvision does.
    pub scaled_decode: bool,
    /// RandAugment after the flip (`[data.augment.randaugment]`; absent: off).
    pub randaugment: Option<super::randaug::RandAugmentConfig>,
    /// Random erasing, the last step (`[data.augment.random_erasing]`; absent: off).
    pub random_erasing: Option<super::erasing::RandomErasingConfig>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            crop_padding: 0,
            padding_mode: PaddingMode::Reflect,
            hflip: false,
            image_size: None,
            random_resized_crop: false,
            rrc_scale: [0.08, 1.0],
            rrc_interpolation: Interpolation::Bilinear,
            test_resize: None,
            color_jitter: [0.0; 4],
            color_jitter_p: 0.8,
            grayscale_p: 0.0,
            blur_p: 0.0,
            blur_sigma: [0.1, 2.0],
            scaled_decode: true,
            randaugment: None,
            random_erasing: None,
        }
    }
}

impl AugmentConfig {
    /// The largest JPEG decoding downscale `scaled_decode` allows.
    pub fn max_decode_scale(&self) -> usize {
        if self.scaled_decode {
            super::jpeg::MAX_SCALE
        } else {
            1
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Archive or folder holding the dataset in its official layout. Unset: the dataset's place in
    /// the data directory (`$SAMIX_DATA`, else `~/.cache/samix/data`), downloaded there when
    /// missing (`samix data download`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Keep only the classes `lo..hi` (`[lo, hi]`, upper bound excluded), relabelled from 0;
    /// `train_limit`/`test_limit` then count within them.
    #[serde(default)]
    pub classes: Option<[usize; 2]>,
    /// Use only the first N training / test images (quick runs, tests).
    #[serde(default)]
    pub train_limit: Option<usize>,
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Compare md5 sums of files whose official sums are known.
    #[serde(default = "DataConfig::default_verify_checksums")]
    pub verify_checksums: bool,
    #[serde(default = "DataConfig::default_workers")]
    pub workers: usize,
    #[serde(default = "DataConfig::default_prefetch")]
    pub prefetch: usize,
    /// What an image that cannot be read or decoded does: `stop` the run naming it (the
    /// default), or `skip` it (its batch is one image short) and say which and how many at the
    /// end of the epoch.
    #[serde(default)]
    pub bad_images: BadImages,
    #[serde(default)]
    pub augment: AugmentConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImages {
    #[default]
    Stop,
    Skip,
}

impl DataConfig {
    fn default_verify_checksums() -> bool {
        true
    }
    fn default_workers() -> usize {
        2
    }
    fn default_prefetch() -> usize {
        2
    }

    /// A config for `dataset` at `path` with every other key at its default.
    pub fn new(dataset: DatasetKind, path: Option<PathBuf>) -> Self {
        DataConfig {
            dataset,
            path,
            classes: None,
            train_limit: None,
            test_limit: None,
            verify_checksums: Self::default_verify_checksums(),
            workers: Self::default_workers(),
            prefetch: Self::default_prefetch(),
            bad_images: BadImages::Stop,
            augment: AugmentConfig::default(),
        }
    }

    /// The side of the (square) images a model sees: the augmentation's output size, else the
    /// dataset's native size.
    pub fn image_side(&self) -> Option<i64> {
        self.augment.image_size.or(self.dataset.native_size()).map(|s| s as i64)
    }

    /// Range checks of this table; errors name the key.
    pub fn check(&self) -> Result<()> {
        if self.classes.is_some_and(|[lo, hi]| lo >= hi) {
            return Err(Error::config("data.classes", "must be [lo, hi] with lo < hi"));
        }
        let a = &self.augment;
        for (key, side) in [("data.augment.image_size", a.image_size), ("data.augment.test_resize", a.test_resize)] {
            side.map_or(Ok(()), |s| check_size(key, s, MAX_IMAGE_SIDE))?;
        }
        check_size("data.workers", self.workers, MAX_WORKERS)?;
        check_size("data.prefetch", self.prefetch, MAX_WORKERS)?;
        if let (Some(side), true) = (self.image_side(), a.crop_padding > 0) {
            let side = side as usize;
            // Both keys, where `image_size` set the side, so a `--set` of either is named.
            let key = match a.image_size {
                Some(_) => "data.augment.crop_padding, data.augment.image_size",
                None => "data.augment.crop_padding",
            };
            if a.crop_padding > side {
                let msg = format!("{} is more than the {side} px image side", a.crop_padding);
                return Err(Error::config(key, msg));
            }
            if a.padding_mode == PaddingMode::Reflect && a.crop_padding >= side {
                let msg = format!("reflect padding must be smaller than the {side} px image side");
                return Err(Error::config(key, msg));
            }
        }
        if a.image_size.is_some_and(|s| s < 1) {
            return Err(Error::config("data.augment.image_size", "must be at least 1"));
        }
        for (key, limit) in [("data.train_limit", self.train_limit), ("data.test_limit", self.test_limit)] {
            if limit == Some(0) {
                return Err(Error::config(key, "must be at least 1 (leave it out to use the whole split)"));
            }
        }
        match (a.test_resize, a.image_size) {
            (Some(_), None) => {
                return Err(Error::config(
                    "data.augment.test_resize",
                    "has no effect without data.augment.image_size (the crop it resizes for)",
                ))
            }
            (Some(resize), Some(size)) if resize < size => {
                let msg = format!(
                    "{resize} is less than data.augment.image_size ({size}); the centre crop is taken from the resized image"
                );
                return Err(Error::config("data.augment.test_resize", msg));
            }
            _ => {}
        }
        if !(a.rrc_scale[0] > 0.0 && a.rrc_scale[0] <= a.rrc_scale[1] && a.rrc_scale[1] <= 1.0) {
            return Err(Error::config("data.augment.rrc_scale", "must be [lo, hi] with 0 < lo <= hi <= 1"));
        }
        if a.color_jitter.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || a.color_jitter[3] > 0.5 {
            let msg = "must be [brightness, contrast, saturation, hue], each >= 0, hue at most 0.5";
            return Err(Error::config("data.augment.color_jitter", msg));
        }
        for (key, p) in [("color_jitter_p", a.color_jitter_p), ("grayscale_p", a.grayscale_p), ("blur_p", a.blur_p)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(format!("data.augment.{key}"), "must be a probability in [0, 1]"));
            }
        }
        if !(a.blur_sigma[0] > 0.0 && a.blur_sigma[0] <= a.blur_sigma[1] && a.blur_sigma[1].is_finite()) {
            return Err(Error::config("data.augment.blur_sigma", "must be [lo, hi] with 0 < lo <= hi"));
        }
        if let Some(r) = &a.randaugment {
            r.check()?;
        }
        if let Some(e) = &a.random_erasing {
            e.check()?;
        }
        if a.image_size.is_none() && self.dataset.native_size().is_none() {
            return Err(Error::config(
                "data.augment.image_size",
                "is required for image_folder datasets (images of any size are resized to it)",
            ));
        }
        Ok(())
    }
}
