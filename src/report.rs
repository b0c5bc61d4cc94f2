//! Pictures for people: PNG grids of image rows (optionally with a number under each column,
//! drawn with a built-in 3×5 digit font), and the grid of a policy's mixed batch. Writes files
//! only.
use crate::data::transform::to_unit;
use crate::mix::{MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

const GAP: usize = 2;

/// 3×5 bitmaps (rows top to bottom, 3 bits each) for 0–9 and '.'.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        _ => return None,
    })
}

/// Writes rows of images (`N×C×H×W` in [0, 1], C = 1 or 3) as one PNG with 2-pixel gaps.
pub fn write_grid(rows: &[Tensor], path: &Path) -> Result<()> {
    write_grid_labeled(rows, &[], path)
}

/// As [`write_grid`], with `labels[i]` (digits and '.') written under column i.
pub fn write_grid_labeled(rows: &[Tensor], labels: &[String], path: &Path) -> Result<()> {
    let s = rows.first().ok_or_else(|| Error::run(path, "no rows to draw"))?.size();
    let (cols, h, w) = (s[0] as usize, s[2] as usize, s[3] as usize);
    let label_h = if labels.is_empty() { 0 } else { 5 + GAP };
    let (width, height) = (cols * (w + GAP) + GAP, rows.len() * (h + GAP) + GAP + label_h);
    let mut canvas = image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let row = row.to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let c = row.size()[1] as usize;
        let data = Vec::<f32>::try_from(&row.flatten(0, -1)).map_err(|e| Error::run(path, e.to_string()))?;
        for i in 0..cols.min(row.size()[0] as usize) {
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: usize| {
                        let ch = ch.min(c - 1);
                        (data[((i * c + ch) * h + y) * w + x] * 255.0).round().clamp(0.0, 255.0) as u8
                    };
                    let (cx, cy) = (GAP + i * (w + GAP) + x, GAP + r * (h + GAP) + y);
                    canvas.put_pixel(cx as u32, cy as u32, image::Rgb([px(0), px(1), px(2)]));
                }
            }
        }
    }
    let top = GAP + rows.len() * (h + GAP);
    for (i, text) in labels.iter().enumerate().take(cols) {
        let mut left = GAP + i * (w + GAP);
        for g in text.chars().filter_map(glyph) {
            for (dy, bits) in g.iter().enumerate() {
                for dx in 0..3 {
                    if bits >> (2 - dx) & 1 == 1 && left + dx < width {
                        canvas.put_pixel((left + dx) as u32, (top + dy) as u32, image::Rgb([0, 0, 0]));
                    }
                }
            }
            left += 4;
        }
    }
    let tmp = path.with_extension("png.tmp");
    canvas.save_with_format(&tmp, image::ImageFormat::Png).map_err(|e| Error::run(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Mixes `images` with `policy` and writes the grid: first images, their partners, the partner's
/// per-pixel weight (white = partner; a flat grey for global blends), the mixed images, and each
/// column's label weight λ of the first image. Returns the mixed batch.
pub fn policy_grid(
    policy: &dyn MixPolicy,
    images: &Tensor,
    labels: &Tensor,
    mean: &[f32],
    std: &[f32],
    rng: &mut SamixRng,
    path: &Path,
) -> Result<MixedBatch> {
    let out = policy.mix(images, labels, rng);
    mixed_grid(out, images, mean, std, path)
}

/// The grid of [`policy_grid`] for a batch mixed elsewhere (e.g. PuzzleMix with a model's saliency).
pub fn mixed_grid(out: MixedBatch, images: &Tensor, mean: &[f32], std: &[f32], path: &Path) -> Result<MixedBatch> {
    let n = images.size()[0];
    let shape = [n, 1, images.size()[2], images.size()[3]];
    let partner = match &out.pairing {
        Some(p) => images.index_select(0, p),
        None => images.shallow_clone(),
    };
    let partner_weight = match &out.mask {
        Some(m) => (-m + 1.0).expand(shape, false).contiguous(),
        None => (-&out.targets.lam + 1.0).view([n, 1, 1, 1]).expand(shape, false).contiguous(),
    };
    let rows =
        [to_unit(images, mean, std), to_unit(&partner, mean, std), partner_weight, to_unit(&out.images, mean, std)];
    let lam = lambdas(&out)?;
    let tags: Vec<String> = lam.iter().map(|l| format!("{l:.2}")).collect();
    write_grid_labeled(&rows, &tags, path)?;
    Ok(out)
}

/// The label weight λ of each sample's first image, on the host.
pub fn lambdas(batch: &MixedBatch) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(&batch.targets.lam.to_kind(Kind::Double).to_device(tch::Device::Cpu))?)
}
