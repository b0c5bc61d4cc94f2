//! Photometric augmentations of the self-supervised (MoCo v2) recipe on CHW images: colour jitter
//! (brightness, contrast, saturation, hue, in a random order), grayscale and Gaussian blur. Pure
//! functions of the image and the drawn parameters; the draws themselves live in
//! [`super::transform`]. Values are computed in f32 on the 0–255 scale, clamped into range after
//! each operation (as torchvision does on tensors), and rounded to bytes once at the end.
use super::RawImage;

/// ITU-R 601 luma weights (torchvision's and PIL's grayscale).
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// One colour-jitter operation with its drawn factor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// Multiplies every value by the factor.
    Brightness(f32),
    /// Blends with the image's mean luma: `f·x + (1 − f)·mean`.
    Contrast(f32),
    /// Blends with each pixel's luma: `f·x + (1 − f)·gray`.
    Saturation(f32),
    /// Shifts the hue by the given fraction of a turn (in [−0.5, 0.5]).
    Hue(f32),
}

/// An image as f32 planes (0–255) for a chain of photometric operations.
pub struct Planes {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Planes {
    pub fn from_image(img: &RawImage) -> Self {
        Planes {
            channels: img.channels,
            height: img.height,
            width: img.width,
            data: img.data.iter().map(|&v| v as f32).collect(),
        }
    }

    pub fn to_image(&self) -> RawImage {
        let data = self.data.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect();
        RawImage::new(self.channels, self.height, self.width, data)
    }

    fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Per-pixel luma (the only channel of a one-channel image).
    fn luma(&self) -> Vec<f32> {
        let n = self.plane();
        if self.channels < 3 {
            return self.data[..n].to_vec();
        }
        (0..n).map(|i| LUMA[0] * self.data[i] + LUMA[1] * self.data[n + i] + LUMA[2] * self.data[2 * n + i]).collect()
    }

    fn clamp(&mut self) {
        self.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0));
    }

    pub fn jitter(&mut self, op: Jitter) {
        let n = self.plane();
        match op {
            Jitter::Brightness(f) => self.data.iter_mut().for_each(|v| *v *= f),
            Jitter::Contrast(f) => {
                let mean = self.luma().iter().sum::<f32>() / n.max(1) as f32;
                self.data.iter_mut().for_each(|v| *v = f * *v + (1.0 - f) * mean);
            }
            Jitter::Saturation(f) => {
                if self.channels < 3 {
                    return; // a gray image is its own luma
                }
                let gray = self.luma();
                for c in 0..3 {
                    for (v, g) in self.data[c * n..(c + 1) * n].iter_mut().zip(&gray) {
                        *v = f * *v + (1.0 - f) * g;
                    }
                }
            }
            Jitter::Hue(shift) => {
                if self.channels < 3 {
                    return;
                }
                for i in 0..n {
                    let rgb = [self.data[i], self.data[n + i], self.data[2 * n + i]];
                    let (h, s, v) = rgb_to_hsv(rgb);
                    let [r, g, b] = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
                    (self.data[i], self.data[n + i], self.data[2 * n + i]) = (r, g, b);
                }
            }
        }
        self.clamp();
    }

    /// Replaces every channel by the luma.
    pub fn grayscale(&mut self) {
        if self.channels < 3 {
            return;
        }
        let gray = self.luma();
        let n = self.plane();
        for c in 0..self.channels {
            self.data[c * n..(c + 1) * n].copy_from_slice(&gray);
        }
    }

    /// Separable Gaussian blur with standard deviation `sigma` pixels over a window of ±⌈3σ⌉,
    /// edges repeated.
    pub fn blur(&mut self, sigma: f32) {
        let radius = (3.0 * sigma).ceil().max(1.0) as isize;
        let mut kernel: Vec<f32> =
            (-radius..=radius).map(|d| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp()).collect();
        let total: f32 = kernel.iter().sum();
        kernel.iter_mut().for_each(|k| *k /= total);
        let (h, w) = (self.height as isize, self.width as isize);
        let n = self.plane();
        let mut tmp = vec![0f32; n];
        for c in 0..self.channels {
            let plane = &mut self.data[c * n..(c + 1) * n];
            for y in 0..h {
                for x in 0..w {
                    let acc: f32 = kernel
                        .iter()
                        .zip(-radius..=radius)
                        .map(|(k, d)| k * plane[(y * w + (x + d).clamp(0, w - 1)) as usize])
                        .sum();
                    tmp[(y * w + x) as usize] = acc;
                }
            }
            for y in 0..h {
                for x in 0..w {
                    let acc: f32 = kernel
                        .iter()
                        .zip(-radius..=radius)
                        .map(|(k, d)| k * tmp[((y + d).clamp(0, h - 1) * w + x) as usize])
                        .sum();
                    plane[(y * w + x) as usize] = acc;
                }
            }
        }
    }
}

/// RGB (0–255) → (hue in [0, 1), saturation, value).
fn rgb_to_hsv([r, g, b]: [f32; 3]) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    let s = if max > 0.0 { delta / max } else { 0.0 };
    if delta <= 0.0 {
        return (0.0, s, max);
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    };
    (h / 6.0, s, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let sector = h * 6.0;
    let i = sector.floor();
    let f = sector - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match (i as i64).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip() {
        for rgb in [[255.0, 0.0, 0.0], [10.0, 200.0, 30.0], [7.0, 7.0, 7.0], [0.0, 128.0, 255.0], [250.0, 3.0, 251.0]] {
            let (h, s, v) = rgb_to_hsv(rgb);
            let back = hsv_to_rgb(h, s, v);
            for (a, b) in rgb.iter().zip(back) {
                assert!((a - b).abs() < 1e-3, "{rgb:?} -> {back:?}");
            }
        }
    }
}
