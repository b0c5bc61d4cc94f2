//! Image transforms on CHW bytes (random crop with padding, flip, random-resized crop,
//! resize + centre crop, the photometric steps of [`super::color`]) and normalisation into f32. Pure functions of the image and an RNG.
use super::color::{Jitter, Planes};
use super::config::{AugmentConfig, Interpolation, PaddingMode};
use super::dataset::{Dataset, PixelView, Window};
use super::erasing::RandomErasingConfig;
use super::randaug::RandAugmentConfig;
use super::resample::{resize_window, resize_window_bicubic};
use super::RawImage;
use crate::Result;
use rand::seq::SliceRandom;
use rand::Rng;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Pads by `padding` on every side, then crops a random `size × size` window.
    RandomCrop { size: usize, padding: usize, mode: PaddingMode },
    /// Mirrors left-right with probability 1/2.
    HorizontalFlip,
    /// torchvision's RandomResizedCrop: a random area fraction in `scale` and log-uniform aspect
    /// ratio in `ratio`, resampled (bilinear or bicubic) to `size × size`.
    RandomResizedCrop { size: usize, scale: (f64, f64), ratio: (f64, f64), interpolation: Interpolation },
    /// Resizes the shorter side to `resize`, then crops the centre `crop × crop`.
    ResizeCenterCrop { resize: usize, crop: usize },
    /// With probability `p`: brightness, contrast, saturation and hue jitter of the given
    /// strengths (zero skips one), in a random order.
    ColorJitter { strength: [f64; 4], p: f64 },
    /// With probability `p`: every channel replaced by the luma.
    Grayscale { p: f64 },
    /// With probability `p`: a Gaussian blur with σ drawn uniformly from `sigma` (pixels).
    GaussianBlur { sigma: (f64, f64), p: f64 },
    /// RandAugment ([`super::randaug`]).
    RandAugment(RandAugmentConfig),
    /// Random erasing ([`super::erasing`]) with noise of this mean and std per channel (pixels).
    RandomErasing { cfg: RandomErasingConfig, mean: Vec<f64>, std: Vec<f64> },
}

/// A sequence of steps followed by per-channel normalisation.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub steps: Vec<Step>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The largest downscale (1, 2, 4, 8) a JPEG may be decoded at when a first resampling step
    /// shrinks it at least that much anyway (`data.augment.scaled_decode`); 1: full resolution.
    pub max_decode_scale: usize,
}

impl Pipeline {
    /// Training pipeline from a config: geometry first (resized crop or resize), then padded crop,
    /// then flip.
    pub fn train(cfg: &AugmentConfig, input_size: Option<usize>, mean: &[f32], std: &[f32]) -> Pipeline {
        let mut steps = Vec::new();
        let size = cfg.image_size.or(input_size);
        if let Some(size) = cfg.image_size {
            if cfg.random_resized_crop {
                steps.push(Step::RandomResizedCrop {
                    size,
                    scale: (cfg.rrc_scale[0], cfg.rrc_scale[1]),
                    ratio: (3.0 / 4.0, 4.0 / 3.0),
                    interpolation: cfg.rrc_interpolation,
                });
            } else {
                steps.push(Step::ResizeCenterCrop { resize: cfg.test_resize.unwrap_or(size), crop: size });
            }
        }
        if cfg.crop_padding > 0 {
            if let Some(size) = size {
                steps.push(Step::RandomCrop { size, padding: cfg.crop_padding, mode: cfg.padding_mode });
            }
        }
        // The photometric steps of the MoCo v2 recipe, in its order (after the crop, before the flip).
        if cfg.color_jitter.iter().any(|&v| v > 0.0) && cfg.color_jitter_p > 0.0 {
            steps.push(Step::ColorJitter { strength: cfg.color_jitter, p: cfg.color_jitter_p });
        }
        if cfg.grayscale_p > 0.0 {
            steps.push(Step::Grayscale { p: cfg.grayscale_p });
        }
        if cfg.blur_p > 0.0 {
            steps.push(Step::GaussianBlur { sigma: (cfg.blur_sigma[0], cfg.blur_sigma[1]), p: cfg.blur_p });
        }
        if cfg.hflip {
            steps.push(Step::HorizontalFlip);
        }
        // timm's and the reference's order: crop, flip, then RandAugment.
        if let Some(r) = &cfg.randaugment {
            steps.push(Step::RandAugment(r.clone()));
        }
        // Last, as timm erases after normalising: noise around the dataset's statistics.
        if let Some(e) = &cfg.random_erasing {
            let pixels = |v: &[f32]| v.iter().map(|&x| f64::from(x) * 255.0).collect::<Vec<f64>>();
            let mean = e.fill_mean.map(|m| m.to_vec()).unwrap_or_else(|| pixels(mean));
            let std = e.fill_std.map(|s| s.to_vec()).unwrap_or_else(|| pixels(std));
            steps.push(Step::RandomErasing { cfg: e.clone(), mean, std });
        }
        Pipeline { steps, mean: mean.to_vec(), std: std.to_vec(), max_decode_scale: cfg.max_decode_scale() }
    }

    /// Evaluation pipeline: deterministic resize + centre crop when an image size is set.
    pub fn eval(cfg: &AugmentConfig, mean: &[f32], std: &[f32]) -> Pipeline {
        let steps = match cfg.image_size {
            Some(size) => vec![Step::ResizeCenterCrop { resize: cfg.test_resize.unwrap_or(size), crop: size }],
            None => Vec::new(),
        };
        Pipeline { steps, mean: mean.to_vec(), std: std.to_vec(), max_decode_scale: cfg.max_decode_scale() }
    }

    /// Loads image `index` and applies the steps. A first step that resamples a window (a
    /// random-resized crop, resize + centre crop) picks it from the image's size before the pixels
    /// are decoded, so a dataset of JPEGs decodes only that window, downscaled where allowed; the
    /// random numbers drawn are those of [`Pipeline::apply`].
    pub fn load_and_apply<R: Rng>(&self, dataset: &dyn Dataset, index: usize, rng: &mut R) -> Result<RawImage> {
        let Some((first, rest)) = self.steps.split_first().filter(|(first, _)| first.resamples()) else {
            return Ok(self.apply(dataset.load(index)?, rng));
        };
        let max_scale = self.max_decode_scale;
        let loaded = dataset.load_window(index, &mut |h, w| {
            let mut window = first.window(h, w, rng);
            window.max_scale = max_scale;
            window
        })?;
        let mut img = first.resample(loaded.image.view(), &loaded.window);
        for step in rest {
            img = apply_step(step, img, rng);
        }
        Ok(img)
    }

    pub fn apply<R: Rng>(&self, mut img: RawImage, rng: &mut R) -> RawImage {
        for step in &self.steps {
            img = apply_step(step, img, rng);
        }
        img
    }

    /// The per-channel normalisation of this pipeline for `channels`-channel batches on `device`.
    pub fn normalizer(&self, channels: usize, device: Device) -> Normalizer {
        let take = |v: &[f32]| (0..channels).map(|c| v[c % v.len()]).collect::<Vec<f32>>();
        let column = |v: &[f32]| Tensor::from_slice(&take(v)).view([channels as i64, 1, 1]).to_device(device);
        Normalizer { mean: column(&self.mean), std: column(&self.std) }
    }
}

/// `(pixel/255 − mean[c]) / std[c]` of byte batches (`N×C×H×W` or `N×V×C×H×W`) on the device
/// they are on, in f32: the loader's workers hand over bytes (a quarter of the floats' size to
/// build, copy and upload) and the device normalises them, one elementwise pass each.
#[derive(Debug)]
pub struct Normalizer {
    /// `C×1×1`, so they broadcast over any leading dimensions.
    mean: Tensor,
    std: Tensor,
}

impl Normalizer {
    pub fn apply(&self, bytes: &Tensor) -> Tensor {
        // In place on the one f32 copy: each step a new batch-sized tensor would otherwise be.
        let mut x = bytes.to_kind(Kind::Float);
        let _ = x.g_div_scalar_(255.0);
        let _ = x.g_sub_(&self.mean);
        let _ = x.g_div_(&self.std);
        x
    }
}

pub fn apply_step<R: Rng>(step: &Step, img: RawImage, rng: &mut R) -> RawImage {
    match *step {
        Step::RandomCrop { size, padding, mode } => {
            let padded = pad(&img, padding, mode);
            let top = rng.gen_range(0..=padded.height.saturating_sub(size));
            let left = rng.gen_range(0..=padded.width.saturating_sub(size));
            crop(&padded, top, left, size.min(padded.height), size.min(padded.width))
        }
        Step::HorizontalFlip => {
            if rng.gen_bool(0.5) {
                hflip(&img)
            } else {
                img
            }
        }
        Step::RandomResizedCrop { .. } | Step::ResizeCenterCrop { .. } => {
            let window = step.window(img.height, img.width, rng);
            step.resample(PixelView::planar(&img), &window)
        }
        Step::ColorJitter { strength, p } => {
            if !rng.gen_bool(p) {
                return img;
            }
            let mut planes = Planes::from_image(&img);
            for op in draw_jitter(strength, rng) {
                planes.jitter(op);
            }
            planes.to_image()
        }
        Step::Grayscale { p } => {
            if !rng.gen_bool(p) {
                return img;
            }
            let mut planes = Planes::from_image(&img);
            planes.grayscale();
            planes.to_image()
        }
        Step::RandAugment(ref cfg) => super::randaug::rand_augment(img, cfg, rng),
        Step::RandomErasing { ref cfg, ref mean, ref std } => super::erasing::erase(img, cfg, mean, std, rng),
        Step::GaussianBlur { sigma, p } => {
            if !rng.gen_bool(p) {
                return img;
            }
            let mut planes = Planes::from_image(&img);
            planes.blur(rng.gen_range(sigma.0..=sigma.1) as f32);
            planes.to_image()
        }
    }
}

impl Step {
    /// Whether this step resamples a window of the image ([`Step::window`]).
    pub fn resamples(&self) -> bool {
        matches!(self, Step::RandomResizedCrop { .. } | Step::ResizeCenterCrop { .. })
    }

    /// The source window a resampling step reads of an `h × w` image (drawing its random
    /// numbers); for any other step, the whole image at its size.
    pub fn window<R: Rng>(&self, h: usize, w: usize, rng: &mut R) -> Window {
        // Bicubic reads 2 pixels beyond the window, bilinear 1.
        let whole = |out_h, out_w| Window {
            top: 0.0,
            left: 0.0,
            height: h as f64,
            width: w as f64,
            out_h,
            out_w,
            margin: 2,
            max_scale: 1,
        };
        match *self {
            Step::RandomResizedCrop { size, scale, ratio, .. } => {
                let (top, left, ch, cw) = random_resized_window(h, w, scale, ratio, rng);
                let (top, left, height, width) = (top as f64, left as f64, ch as f64, cw as f64);
                Window { top, left, height, width, ..whole(size, size) }
            }
            Step::ResizeCenterCrop { resize, crop: out } => {
                // Scale so the shorter side becomes `resize`, then take the centre `out × out` of
                // that virtual image, sampled directly from the source.
                let s = resize as f64 / h.min(w) as f64;
                let (vh, vw) = (h as f64 * s, w as f64 * s);
                let (top, left) = (((vh - out as f64) / 2.0).round() / s, ((vw - out as f64) / 2.0).round() / s);
                let side = out as f64 / s;
                Window { top, left, height: side, width: side, ..whole(out, out) }
            }
            _ => whole(h, w),
        }
    }

    /// Resamples `window` of `img` to the window's output size with this step's interpolation
    /// (bilinear unless a random-resized crop says bicubic).
    pub fn resample(&self, img: PixelView, window: &Window) -> RawImage {
        let Window { top, left, height, width, out_h, out_w, .. } = *window;
        match self {
            Step::RandomResizedCrop { interpolation: Interpolation::Bicubic, .. } => {
                resize_window_bicubic(img, top, left, height, width, out_h, out_w)
            }
            _ => resize_window(img, top, left, height, width, out_h, out_w),
        }
    }
}

/// The jitter operations of one image: the ones with a non-zero strength, each with a factor
/// drawn from its range, in a random order (torchvision's ColorJitter).
pub fn draw_jitter<R: Rng>(strength: [f64; 4], rng: &mut R) -> Vec<Jitter> {
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    let factor = |s: f64, rng: &mut R| rng.gen_range((1.0 - s).max(0.0)..=1.0 + s) as f32;
    let mut ops = Vec::with_capacity(4);
    for i in order {
        let s = strength[i];
        if s <= 0.0 {
            continue;
        }
        ops.push(match i {
            0 => Jitter::Brightness(factor(s, rng)),
            1 => Jitter::Contrast(factor(s, rng)),
            2 => Jitter::Saturation(factor(s, rng)),
            _ => Jitter::Hue(rng.gen_range(-s..=s) as f32),
        });
    }
    ops
}

pub fn pad(img: &RawImage, p: usize, mode: PaddingMode) -> RawImage {
    if p == 0 {
        return img.clone();
    }
    let (h, w) = (img.height + 2 * p, img.width + 2 * p);
    let mut data = vec![0u8; img.channels * h * w];
    // Reflect without repeating the edge pixel (numpy/torch "reflect").
    let reflect = |i: isize, n: usize| -> usize {
        if n <= 1 {
            return 0; // a 1-pixel side reflects onto itself (the loop below would never end)
        }
        let n = n as isize;
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    for c in 0..img.channels {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y as isize - p as isize, x as isize - p as isize);
                let inside = sy >= 0 && sx >= 0 && (sy as usize) < img.height && (sx as usize) < img.width;
                data[(c * h + y) * w + x] = match mode {
                    PaddingMode::Zeros if !inside => 0,
                    _ => img.pixel(c, reflect(sy, img.height), reflect(sx, img.width)),
                };
            }
        }
    }
    RawImage::new(img.channels, h, w, data)
}

pub fn crop(img: &RawImage, top: usize, left: usize, h: usize, w: usize) -> RawImage {
    let mut data = Vec::with_capacity(img.channels * h * w);
    for c in 0..img.channels {
        for y in top..top + h {
            let row = (c * img.height + y) * img.width;
            data.extend_from_slice(&img.data[row + left..row + left + w]);
        }
    }
    RawImage::new(img.channels, h, w, data)
}

pub fn hflip(img: &RawImage) -> RawImage {
    let mut out = img.clone();
    for row in out.data.chunks_exact_mut(img.width) {
        row.reverse();
    }
    out
}

fn random_resized_window<R: Rng>(
    h: usize,
    w: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lr0..=lr1).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            return (rng.gen_range(0..=h - ch), rng.gen_range(0..=w - cw), ch, cw);
        }
    }
    // Fallback as torchvision: the central crop with the aspect ratio clamped into range.
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio.0 {
        ((w as f64 / ratio.0).round() as usize, w)
    } else if in_ratio > ratio.1 {
        (h, (h as f64 * ratio.1).round() as usize)
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Undoes the per-channel normalisation for display, clamped to [0, 1].
pub fn to_unit(x: &Tensor, mean: &[f32], std: &[f32]) -> Tensor {
    let c = x.size()[1];
    let take = |v: &[f32]| (0..c as usize).map(|i| v[i % v.len()]).collect::<Vec<f32>>();
    let m = Tensor::from_slice(&take(mean)).view([1, c, 1, 1]).to_device(x.device());
    let s = Tensor::from_slice(&take(std)).view([1, c, 1, 1]).to_device(x.device());
    (x * s + m).clamp(0.0, 1.0)
}
