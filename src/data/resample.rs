//! Resampling a window of a CHW byte image onto a new grid: bilinear (half-pixel centres, as
//! `align_corners=False`) and bicubic (Keys a = −0.5, PIL's resize kernel without antialiasing),
//! both rounding as `f32::round` then clamping. Used by the resizing steps of [`super::transform`].
use super::dataset::RawImage;

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
    let (plane, w) = (img.height * img.width, img.width);
    let mut data = vec![0u8; img.channels * out_h * out_w];
    // Each output row: both source rows interpolated across first (the same operations, in the
    // same order, as one pixel at a time), then blended down in a loop the compiler vectorises.
    let (mut upper, mut lower) = (vec![0f32; out_w], vec![0f32; out_w]);
    let across = |row: &[u8], out: &mut [f32]| {
        for (o, &(x0, x1, fx)) in out.iter_mut().zip(&xs) {
            *o = f32::from(row[x0]) * (1.0 - fx) + f32::from(row[x1]) * fx;
        }
    };
    let out_rows = data.chunks_exact_mut(out_w.max(1));
    let in_rows =
        img.data.chunks_exact(plane.max(1)).take(img.channels).flat_map(|channel| ys.iter().map(move |y| (channel, y)));
    for (out_row, (channel, &(y0, y1, fy))) in out_rows.zip(in_rows) {
        across(&channel[y0 * w..(y0 + 1) * w], &mut upper);
        across(&channel[y1 * w..(y1 + 1) * w], &mut lower);
        for ((o, &a), &b) in out_row.iter_mut().zip(&upper).zip(&lower) {
            *o = round_to_byte(a * (1.0 - fy) + b * fy);
        }
    }
    RawImage::new(img.channels, out_h, out_w, data)
}

/// `x.round().clamp(0.0, 255.0) as u8` without a call to libm's `roundf`: adding the largest
/// float below 1/2 and truncating rounds halves away from zero exactly as `round` does (LLVM's
/// own lowering of `round` where SSE4.1 allows), and the cast saturates at 0 and 255.
#[inline]
fn round_to_byte(x: f32) -> u8 {
    const JUST_BELOW_HALF: f32 = f32::from_bits(0x3EFF_FFFF);
    (x + JUST_BELOW_HALF) as u8
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
    let (plane, w) = (img.height * img.width, img.width);
    let mut data = Vec::with_capacity(img.channels * out_h * out_w);
    for channel in img.data.chunks_exact(plane.max(1)).take(img.channels) {
        for ty in &ys {
            let rows = ty.map(|(y, wy)| (&channel[y * w..(y + 1) * w], wy));
            for tx in &xs {
                let mut v = 0f32;
                for &(row, wy) in &rows {
                    for &(x, wx) in tx {
                        v += f32::from(row[x]) * wy * wx;
                    }
                }
                data.push(round_to_byte(v));
            }
        }
    }
    RawImage::new(img.channels, out_h, out_w, data)
}

#[cfg(test)]
mod tests {
    use super::RawImage;

    /// Every multiple of 2⁻¹⁶ in [−2, 257] and the floats around each half: the same byte as
    /// rounding with `round` then clamping.
    #[test]
    fn round_to_byte_is_round_then_clamp() {
        let check = |x: f32| assert_eq!(super::round_to_byte(x), x.round().clamp(0.0, 255.0) as u8, "{x:e}");
        for k in -(2 << 16)..=(257 << 16) {
            check(k as f32 / 65536.0);
        }
        for k in -2..=257 {
            let half = f32::from_bits((k as f32 + 0.5).to_bits());
            for d in -4i32..=4 {
                check(f32::from_bits((half.to_bits() as i32 + d) as u32));
            }
        }
        check(f32::NAN);
    }

    /// The bilinear resampling as first written, one pixel at a time.
    fn resize_one_by_one(img: &RawImage, top: f64, left: f64, h: f64, w: f64, out_h: usize, out_w: usize) -> Vec<u8> {
        let (sy, sx) = (h / out_h as f64, w / out_w as f64);
        let coords = |o: usize, s: f64, off: f64, n: usize| -> (usize, usize, f32) {
            let c = (off + (o as f64 + 0.5) * s - 0.5).clamp(0.0, (n - 1) as f64);
            let i0 = c.floor() as usize;
            (i0, (i0 + 1).min(n - 1), (c - i0 as f64) as f32)
        };
        let mut data = Vec::new();
        for c in 0..img.channels {
            for (y0, y1, fy) in (0..out_h).map(|o| coords(o, sy, top, img.height)) {
                for (x0, x1, fx) in (0..out_w).map(|o| coords(o, sx, left, img.width)) {
                    let p = |y, x| img.pixel(c, y, x) as f32;
                    let top_row = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                    let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                    data.push((top_row * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        data
    }

    #[test]
    fn row_wise_bilinear_resampling_gives_the_pixel_wise_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..40 {
            let (h, w) = (rng.gen_range(1..60), rng.gen_range(1..60));
            let img = RawImage::new(3, h, w, (0..3 * h * w).map(|_| rng.gen()).collect());
            let (top, left) = (rng.gen_range(-2.0..h as f64), rng.gen_range(-2.0..w as f64));
            let (wh, ww) = (rng.gen_range(0.5..h as f64 + 3.0), rng.gen_range(0.5..w as f64 + 3.0));
            let (oh, ow) = (rng.gen_range(1..80), rng.gen_range(1..80));
            let got = super::resize_window(&img, top, left, wh, ww, oh, ow);
            assert_eq!(got.data, resize_one_by_one(&img, top, left, wh, ww, oh, ow), "{h}×{w} → {oh}×{ow}");
        }
    }
}
