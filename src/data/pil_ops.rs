//! The image operations RandAugment is made of, on CHW bytes, giving Pillow's bytes: lookup-table
//! ops (invert, posterize, solarize, equalize, autocontrast), `ImageEnhance`'s blends (colour,
//! contrast, brightness, sharpness) and bicubic affine warps (shear, translate, rotate). Each
//! follows Pillow 13's C code where rounding matters (f32 blends that truncate, the 3×3 SMOOTH
//! filter's summation order, the a = −1 bicubic in f64); `tests/randaug.rs` compares them with
//! Pillow byte for byte. Pure functions; no randomness.
use super::dataset::RawImage;

/// Applies one 256-entry table per channel.
fn map_channels(img: &RawImage, lut: impl Fn(usize) -> [u8; 256]) -> RawImage {
    let plane = img.height * img.width;
    let mut out = img.clone();
    for (c, channel) in out.data.chunks_exact_mut(plane.max(1)).enumerate() {
        let table = lut(c);
        for p in channel {
            *p = table[usize::from(*p)];
        }
    }
    out
}

fn table(f: impl Fn(u8) -> u8) -> [u8; 256] {
    std::array::from_fn(|i| f(i as u8))
}

pub fn invert(img: &RawImage) -> RawImage {
    map_channels(img, |_| table(|v| 255 - v))
}

/// Keeps the top `bits` bits; 0 bits gives black (Pillow before 13; Pillow 13 refuses 0).
pub fn posterize(img: &RawImage, bits: u32) -> RawImage {
    if bits >= 8 {
        return img.clone();
    }
    let mask = !((1u16 << (8 - bits)) - 1) as u8;
    map_channels(img, |_| table(|v| v & mask))
}

/// Inverts the pixels at or above `threshold`.
pub fn solarize(img: &RawImage, threshold: u32) -> RawImage {
    map_channels(img, |_| table(|v| if u32::from(v) < threshold { v } else { 255 - v }))
}

/// Adds `add` to the pixels below 128 (timm's `solarize_add`), saturating.
pub fn solarize_add(img: &RawImage, add: u32) -> RawImage {
    map_channels(img, |_| table(|v| if v < 128 { (u32::from(v) + add).min(255) as u8 } else { v }))
}

fn histogram(channel: &[u8]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for &p in channel {
        h[usize::from(p)] += 1;
    }
    h
}

fn channel(img: &RawImage, c: usize) -> &[u8] {
    let plane = img.height * img.width;
    &img.data[c * plane..(c + 1) * plane]
}

/// Per-channel histogram equalisation (`ImageOps.equalize`).
pub fn equalize(img: &RawImage) -> RawImage {
    map_channels(img, |c| {
        let h = histogram(channel(img, c));
        let used: Vec<u64> = h.iter().copied().filter(|&n| n > 0).collect();
        let step = match used.as_slice() {
            [.., last] if used.len() > 1 => (used.iter().sum::<u64>() - last) / 255,
            _ => 0,
        };
        if step == 0 {
            return table(|v| v);
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[i];
            v
        })
    })
}

/// Stretches each channel's range to 0–255 (`ImageOps.autocontrast`, no cutoff).
pub fn autocontrast(img: &RawImage) -> RawImage {
    map_channels(img, |c| {
        let h = histogram(channel(img, c));
        let (Some(lo), Some(hi)) = (h.iter().position(|&n| n > 0), h.iter().rposition(|&n| n > 0)) else {
            return table(|v| v);
        };
        if hi <= lo {
            return table(|v| v);
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        table(|v| (f64::from(v) * scale + offset).trunc().clamp(0.0, 255.0) as u8)
    })
}

/// `Image.blend(degenerate, img, factor)`: `degenerate + factor·(img − degenerate)` in f32,
/// truncated (and clamped when `factor` extrapolates), with the factor rounded to f32 first.
fn blend(degenerate: &[u8], img: &RawImage, factor: f64) -> RawImage {
    let alpha = factor as f32;
    let mut out = img.clone();
    for (o, (&a, &b)) in out.data.iter_mut().zip(degenerate.iter().zip(&img.data)) {
        // No fused multiply-add: Pillow's x86-64 builds round the product first.
        let t = f32::from(a) + alpha * (i32::from(b) - i32::from(a)) as f32;
        *o = if t <= 0.0 {
            0
        } else if t >= 255.0 {
            255
        } else {
            t as u8
        };
    }
    out
}

/// Pillow's RGB→L: (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16; a one-channel image is its own.
fn luma(img: &RawImage) -> Vec<u8> {
    if img.channels < 3 {
        return channel(img, 0).to_vec();
    }
    let (r, g, b) = (channel(img, 0), channel(img, 1), channel(img, 2));
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| {
            ((19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b) + 0x8000) >> 16) as u8
        })
        .collect()
}

/// `ImageEnhance.Color`: blends with the image's grey version.
pub fn color(img: &RawImage, factor: f64) -> RawImage {
    let grey = luma(img);
    let degenerate: Vec<u8> = (0..img.channels).flat_map(|_| grey.iter().copied()).collect();
    blend(&degenerate, img, factor)
}

/// `ImageEnhance.Contrast`: blends with the mean grey level, rounded half up.
pub fn contrast(img: &RawImage, factor: f64) -> RawImage {
    let grey = luma(img);
    let mean = grey.iter().map(|&v| u64::from(v)).sum::<u64>() as f64 / grey.len().max(1) as f64;
    let level = (mean + 0.5).floor().clamp(0.0, 255.0) as u8;
    blend(&vec![level; img.data.len()], img, factor)
}

/// `ImageEnhance.Brightness`: blends with black.
pub fn brightness(img: &RawImage, factor: f64) -> RawImage {
    blend(&vec![0; img.data.len()], img, factor)
}

/// `ImageEnhance.Sharpness`: blends with `ImageFilter.SMOOTH` (3×3 kernel 1 1 1 / 1 5 1 / 1 1 1
/// over 13, summed in f32 from +0.5, rows below first; the border rows and columns unfiltered).
pub fn sharpness(img: &RawImage, factor: f64) -> RawImage {
    let (h, w) = (img.height, img.width);
    let mut smooth = img.data.clone();
    let (k1, k5) = (1.0f32 / 13.0, 5.0f32 / 13.0);
    for c in 0..img.channels {
        let plane = &img.data[c * h * w..(c + 1) * h * w];
        for y in 1..h.saturating_sub(1) {
            for x in 1..w - 1 {
                let row = |yy: usize, centre: f32| {
                    let p = |xx: usize| f32::from(plane[yy * w + xx]);
                    p(x - 1) * k1 + p(x) * centre + p(x + 1) * k1
                };
                let mut ss = 0.5f32;
                ss += row(y + 1, k1);
                ss += row(y, k5);
                ss += row(y - 1, k1);
                smooth[c * h * w + y * w + x] = ss.clamp(0.0, 255.0) as u8;
            }
        }
    }
    blend(&smooth, img, factor)
}

/// Pillow's affine warp with bicubic resampling: output pixel (x, y) reads the input at
/// (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f); a point outside the input keeps `fill`.
pub fn affine_bicubic(img: &RawImage, m: [f64; 6], fill: &[u8]) -> RawImage {
    let (h, w) = (img.height, img.width);
    let mut out = vec![0u8; img.data.len()];
    let clip = |v: i64, n: usize| v.clamp(0, n as i64 - 1) as usize;
    for y in 0..h {
        for x in 0..w {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let (xin, yin) = (m[0] * xo + m[1] * yo + m[2], m[3] * xo + m[4] * yo + m[5]);
            let inside = xin >= 0.0 && xin < w as f64 && yin >= 0.0 && yin < h as f64;
            for c in 0..img.channels {
                out[(c * h + y) * w + x] = if inside {
                    bicubic_at(channel(img, c), w, h, xin - 0.5, yin - 0.5, clip)
                } else {
                    fill[c % fill.len().max(1)]
                };
            }
        }
    }
    RawImage::new(img.channels, h, w, out)
}

/// Keys' cubic with a = −1 on four samples, as Pillow's `BICUBIC` macro writes it.
fn cubic(v1: f64, v2: f64, v3: f64, v4: f64, d: f64) -> f64 {
    let p1 = v2;
    let p2 = -v1 + v3;
    let p3 = 2.0 * (v1 - v2) + v3 - v4;
    let p4 = -v1 + v2 - v3 + v4;
    p1 + d * (p2 + d * (p3 + d * p4))
}

fn bicubic_at(plane: &[u8], w: usize, h: usize, xs: f64, ys: f64, clip: impl Fn(i64, usize) -> usize) -> u8 {
    let (x0, y0) = (xs.floor() as i64, ys.floor() as i64);
    let (dx, dy) = (xs - x0 as f64, ys - y0 as f64);
    let cols = [clip(x0 - 1, w), clip(x0, w), clip(x0 + 1, w), clip(x0 + 2, w)];
    let row = |k: i64| {
        let r = &plane[clip(y0 + k, h) * w..][..w];
        cubic(f64::from(r[cols[0]]), f64::from(r[cols[1]]), f64::from(r[cols[2]]), f64::from(r[cols[3]]), dx)
    };
    let v = cubic(row(-1), row(0), row(1), row(2), dy);
    if v <= 0.0 {
        0
    } else if v >= 255.0 {
        255
    } else {
        v as u8
    }
}

/// `img.rotate(degrees, BICUBIC, fillcolor=fill)`: counter-clockwise about the image's centre,
/// same size, with Pillow's matrix (cos and sin rounded to 15 decimals).
pub fn rotate(img: &RawImage, degrees: f64, fill: &[u8]) -> RawImage {
    let angle = degrees.rem_euclid(360.0);
    if angle == 0.0 {
        return img.clone();
    }
    let round15 = |v: f64| format!("{v:.15}").parse::<f64>().unwrap_or(v);
    let theta = -angle.to_radians();
    let (a, b, d, e) = (round15(theta.cos()), round15(theta.sin()), round15(-theta.sin()), round15(theta.cos()));
    let (cx, cy) = (img.width as f64 / 2.0, img.height as f64 / 2.0);
    let c = a * -cx + b * -cy + 0.0 + cx;
    let f = d * -cx + e * -cy + 0.0 + cy;
    affine_bicubic(img, [a, b, c, d, e, f], fill)
}
