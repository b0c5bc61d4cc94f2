//! Image transforms on CHW bytes (random crop with padding, flip, random-resized crop,
//! resize + centre crop, the photometric steps of [`super::color`]) and normalisation into f32. Pure functions of the image and an RNG.
use super::color::{Jitter, Planes};
use super::config::{AugmentConfig, Interpolation, PaddingMode};
use super::RawImage;
use rand::seq::SliceRandom;
use rand::Rng;
use tch::Tensor;

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
}

/// A sequence of steps followed by per-channel normalisation.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub steps: Vec<Step>,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
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
        Pipeline { steps, mean: mean.to_vec(), std: std.to_vec() }
    }

    /// Evaluation pipeline: deterministic resize + centre crop when an image size is set.
    pub fn eval(cfg: &AugmentConfig, mean: &[f32], std: &[f32]) -> Pipeline {
        let steps = match cfg.image_size {
            Some(size) => vec![Step::ResizeCenterCrop { resize: cfg.test_resize.unwrap_or(size), crop: size }],
            None => Vec::new(),
        };
        Pipeline { steps, mean: mean.to_vec(), std: std.to_vec() }
    }

    pub fn apply<R: Rng>(&self, mut img: RawImage, rng: &mut R) -> RawImage {
        for step in &self.steps {
            img = apply_step(step, img, rng);
        }
        img
    }

    /// Writes `(pixel/255 − mean[c]) / std[c]` into `out` (length C·H·W).
    pub fn normalize_into(&self, img: &RawImage, out: &mut [f32]) {
        let plane = img.height * img.width;
        for c in 0..img.channels {
            let (m, s) = (self.mean[c % self.mean.len()], self.std[c % self.std.len()]);
            let src = &img.data[c * plane..(c + 1) * plane];
            for (o, &p) in out[c * plane..(c + 1) * plane].iter_mut().zip(src) {
                *o = (p as f32 / 255.0 - m) / s;
            }
        }
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
        Step::RandomResizedCrop { size, scale, ratio, interpolation } => {
            let (top, left, h, w) = random_resized_window(img.height, img.width, scale, ratio, rng);
            let (top, left, h, w) = (top as f64, left as f64, h as f64, w as f64);
            match interpolation {
                Interpolation::Bilinear => resize_window(&img, top, left, h, w, size, size),
                Interpolation::Bicubic => resize_window_bicubic(&img, top, left, h, w, size, size),
            }
        }
        Step::ResizeCenterCrop { resize, crop: out } => {
            // Scale so the shorter side becomes `resize`, then take the centre `out × out` of that
            // virtual image, sampled directly from the source.
            let s = resize as f64 / img.height.min(img.width) as f64;
            let (vh, vw) = (img.height as f64 * s, img.width as f64 * s);
            let (top, left) = (((vh - out as f64) / 2.0).round() / s, ((vw - out as f64) / 2.0).round() / s);
            resize_window(&img, top, left, out as f64 / s, out as f64 / s, out, out)
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

/// Bilinear resampling (half-pixel centres, as `align_corners=False`) of the source window
/// `[top, top+h) × [left, left+w)` onto an `out_h × out_w` grid; coordinates clamp at the borders.
pub fn resize_window(img: &RawImage, top: f64, left: f64, h: f64, w: f64, out_h: usize, out_w: usize) -> RawImage {
    let (sy, sx) = (h / out_h as f64, w / out_w as f64);
    let coords = |o: usize, s: f64, off: f64, n: usize| -> (usize, usize, f32) {
        let c = (off + (o as f64 + 0.5) * s - 0.5).clamp(0.0, (n - 1) as f64);
        let i0 = c.floor() as usize;
        (i0, (i0 + 1).min(n - 1), (c - i0 as f64) as f32)
    };
    let ys: Vec<_> = (0..out_h).map(|o| coords(o, sy, top, img.height)).collect();
    let xs: Vec<_> = (0..out_w).map(|o| coords(o, sx, left, img.width)).collect();
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for c in 0..img.channels {
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let p = |y, x| img.pixel(c, y, x) as f32;
                let top_row = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                data.push((top_row * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    RawImage::new(img.channels, out_h, out_w, data)
}

/// Keys' cubic convolution kernel with a = −0.5 (PIL's bicubic).
fn cubic(t: f64) -> f64 {
    const A: f64 = -0.5;
    let t = t.abs();
    if t < 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        (((t - 5.0) * t + 8.0) * t - 4.0) * A
    } else {
        0.0
    }
}

/// As [`resize_window`] with bicubic resampling: each output pixel weighs the 4×4 source pixels
/// around its centre by [`cubic`] (indices clamped at the borders), rounded and clamped to bytes.
pub fn resize_window_bicubic(
    img: &RawImage,
    top: f64,
    left: f64,
    h: f64,
    w: f64,
    out_h: usize,
    out_w: usize,
) -> RawImage {
    // Per output coordinate: the 4 source indices and their weights (which sum to 1).
    let taps = |o: usize, s: f64, off: f64, n: usize| -> [(usize, f32); 4] {
        let c = off + (o as f64 + 0.5) * s - 0.5;
        let base = c.floor();
        let mut out = [(0usize, 0f32); 4];
        for (k, tap) in out.iter_mut().enumerate() {
            let i = base + k as f64 - 1.0;
            *tap = (i.clamp(0.0, (n - 1) as f64) as usize, cubic(c - i) as f32);
        }
        out
    };
    let (sy, sx) = (h / out_h as f64, w / out_w as f64);
    let ys: Vec<_> = (0..out_h).map(|o| taps(o, sy, top, img.height)).collect();
    let xs: Vec<_> = (0..out_w).map(|o| taps(o, sx, left, img.width)).collect();
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for c in 0..img.channels {
        for ty in &ys {
            for tx in &xs {
                let mut v = 0f32;
                for &(y, wy) in ty {
                    for &(x, wx) in tx {
                        v += img.pixel(c, y, x) as f32 * wy * wx;
                    }
                }
                data.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    RawImage::new(img.channels, out_h, out_w, data)
}

/// Undoes the per-channel normalisation for display, clamped to [0, 1].
pub fn to_unit(x: &Tensor, mean: &[f32], std: &[f32]) -> Tensor {
    let c = x.size()[1];
    let take = |v: &[f32]| (0..c as usize).map(|i| v[i % v.len()]).collect::<Vec<f32>>();
    let m = Tensor::from_slice(&take(mean)).view([1, c, 1, 1]).to_device(x.device());
    let s = Tensor::from_slice(&take(std)).view([1, c, 1, 1]).to_device(x.device());
    (x * s + m).clamp(0.0, 1.0)
}
