//! Resampling a window of a byte image (planar, or interleaved as a JPEG decoder writes it) onto
//! a new grid: bilinear (half-pixel centres, as `align_corners=False`) and bicubic (Keys
//! a = −0.5, PIL's resize kernel without antialiasing), both rounding as `f32::round` then
//! clamping; the output is planar. Used by the resizing steps of [`super::transform`].
use super::dataset::{PixelView, RawImage};

/// Bilinear resampling (half-pixel centres, as `align_corners=False`) of the source window
/// `[top, top+h) × [left, left+w)` onto an `out_h × out_w` grid; coordinates clamp at the borders.
pub fn resize_window(src: PixelView, top: f64, left: f64, h: f64, w: f64, out_h: usize, out_w: usize) -> RawImage {
    let (sy, sx) = (h / out_h as f64, w / out_w as f64);
    let coords = |o: usize, s: f64, off: f64, n: usize| -> (usize, usize, f32) {
        let c = (off + (o as f64 + 0.5) * s - 0.5).clamp(0.0, (n - 1) as f64);
        let i0 = c.floor() as usize;
        (i0, (i0 + 1).min(n - 1), (c - i0 as f64) as f32)
    };
    let ys: Vec<_> = (0..out_h).map(|o| coords(o, sy, top, src.height)).collect();
    let xs: Vec<_> = (0..out_w).map(|o| coords(o, sx, left, src.width)).collect();
    let mut data = vec![0u8; src.channels * out_h * out_w];
    // Each output row blends two source rows interpolated across (the same operations, in the
    // same order, as one pixel at a time) in a loop the compiler vectorises. A source row serves
    // several output rows when the window is enlarged, so the last two interpolated rows are kept.
    let across = |c: usize, y: usize, out: &mut [f32]| {
        let row = &src.data[c * src.channel_step + y * src.row_step..];
        let step = src.column_step;
        for (o, &(x0, x1, fx)) in out.iter_mut().zip(&xs) {
            *o = f32::from(row[x0 * step]) * (1.0 - fx) + f32::from(row[x1 * step]) * fx;
        }
    };
    let plane = (out_h * out_w).max(1);
    for (c, out_plane) in data.chunks_exact_mut(plane).enumerate() {
        let mut rows = TwoRows { index: [usize::MAX; 2], values: [vec![0f32; out_w], vec![0f32; out_w]] };
        for (out_row, &(y0, y1, fy)) in out_plane.chunks_exact_mut(out_w.max(1)).zip(&ys) {
            let upper = rows.fetch(y0, y1, |y, buf| across(c, y, buf));
            let lower = rows.fetch(y1, y0, |y, buf| across(c, y, buf));
            let (upper, lower) = (&rows.values[upper], &rows.values[lower]);
            for ((o, &a), &b) in out_row.iter_mut().zip(upper).zip(lower) {
                *o = round_to_byte(a * (1.0 - fy) + b * fy);
            }
        }
    }
    RawImage::new(src.channels, out_h, out_w, data)
}

/// The two most recently interpolated source rows of a channel and their row indices.
struct TwoRows {
    index: [usize; 2],
    values: [Vec<f32>; 2],
}

impl TwoRows {
    /// The slot holding source row `want`, filling one with `fill` unless it is there already;
    /// the slot holding `keep` (the other row the output row needs) is not overwritten.
    fn fetch(&mut self, want: usize, keep: usize, fill: impl FnOnce(usize, &mut [f32])) -> usize {
        if let Some(slot) = self.index.iter().position(|&i| i == want) {
            return slot;
        }
        let slot = usize::from(self.index[0] == keep);
        fill(want, &mut self.values[slot]);
        self.index[slot] = want;
        slot
    }
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
    src: PixelView,
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
    let ys: Vec<_> = (0..out_h).map(|o| taps(o, sy, top, src.height)).collect();
    let xs: Vec<_> = (0..out_w).map(|o| taps(o, sx, left, src.width)).collect();
    let step = src.column_step;
    let mut data = Vec::with_capacity(src.channels * out_h * out_w);
    for c in 0..src.channels {
        for ty in &ys {
            let rows = ty.map(|(y, wy)| (&src.data[c * src.channel_step + y * src.row_step..], wy));
            for tx in &xs {
                let mut v = 0f32;
                for &(row, wy) in &rows {
                    for &(x, wx) in tx {
                        v += f32::from(row[x * step]) * wy * wx;
                    }
                }
                data.push(round_to_byte(v));
            }
        }
    }
    RawImage::new(src.channels, out_h, out_w, data)
}

#[cfg(test)]
mod tests {
    use super::{PixelView, RawImage};
    use crate::data::Decoded;

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
            let got = super::resize_window(PixelView::planar(&img), top, left, wh, ww, oh, ow);
            assert_eq!(got.data, resize_one_by_one(&img, top, left, wh, ww, oh, ow), "{h}×{w} → {oh}×{ow}");
        }
    }

    /// The same image stored pixel-major (as libjpeg writes it) resamples to the same bytes, in
    /// both kernels.
    #[test]
    fn interleaved_sources_resample_as_planar_ones() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..20 {
            let (h, w) = (rng.gen_range(1..40), rng.gen_range(1..40));
            let planar = RawImage::new(3, h, w, (0..3 * h * w).map(|_| rng.gen()).collect());
            let data = (0..h * w * 3).map(|i| planar.pixel(i % 3, i / 3 / w, i / 3 % w)).collect();
            let interleaved = Decoded::Interleaved { channels: 3, height: h, width: w, data };
            assert_eq!(interleaved.clone().into_planar(), planar);
            let (top, left, wh, ww) = (rng.gen_range(0.0..h as f64), rng.gen_range(0.0..w as f64), 7.5, 9.25);
            let (oh, ow) = (rng.gen_range(1..50), rng.gen_range(1..50));
            for kernel in [super::resize_window, super::resize_window_bicubic] {
                let want = kernel(PixelView::planar(&planar), top, left, wh, ww, oh, ow);
                assert_eq!(kernel(interleaved.view(), top, left, wh, ww, oh, ow), want, "{h}×{w} → {oh}×{ow}");
            }
        }
    }
}
