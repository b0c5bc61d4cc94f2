//! Pictures for people: PNG grids of image rows (cells upscaled to be seen, rows and columns
//! labelled, a legend for masks) including the grid of a policy's mixed batch, line charts
//! ([`chart`], drawn with `plotters`), and the text both are labelled with ([`text`]: a bundled
//! font, no system fonts). Writes files only.
pub mod chart;
pub mod text;

use crate::data::transform::to_unit;
use crate::mix::{MixPolicy, MixedBatch};
use crate::rng::SamixRng;
use crate::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// Cells are drawn at least this many pixels on their longer side (nearest-neighbour upscaling,
/// so every source pixel stays a visible square).
pub const MIN_CELL: usize = 96;
const GAP: u32 = 4;
const PAD: u32 = 10;
/// Label text: its size, and the height a line of it takes in the layout.
const TEXT_PX: f64 = 16.0;
const TEXT_H: u32 = 16;
const INK: plotters::style::RGBColor = plotters::style::RGBColor(20, 20, 20);

/// What a grid says about itself: a label left of each row, one under each column, and a legend
/// line under the grid (with a black-to-white bar, for grids showing masks or weights).
#[derive(Clone, Debug, Default)]
pub struct GridLabels {
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    pub legend: Option<String>,
}

/// The upscaling factor of a `h`×`w` cell.
pub fn cell_scale(h: usize, w: usize) -> usize {
    MIN_CELL.div_ceil(h.max(w).max(1)).max(1)
}

/// Writes rows of images (`N×C×H×W` in [0, 1], C = 1 or 3) as one PNG: cells upscaled to at
/// least [`MIN_CELL`] pixels, with the labels of `labels`.
pub fn write_grid(rows: &[Tensor], labels: &GridLabels, path: &Path) -> Result<()> {
    let s = rows.first().ok_or_else(|| Error::run(path, "no rows to draw"))?.size();
    text::register(path)?;
    let (cols, h, w) = (s[0] as usize, s[2] as usize, s[3] as usize);
    let k = cell_scale(h, w);
    let (cell_w, cell_h) = ((w * k) as u32, (h * k) as u32);
    let text_h = TEXT_H;
    let label_w = labels.rows.iter().map(|l| text::width(l, TEXT_PX)).max().unwrap_or(0);
    let left = PAD + if label_w > 0 { label_w + PAD } else { 0 };
    let grid_w = cols as u32 * (cell_w + GAP) - GAP;
    let grid_h = rows.len() as u32 * (cell_h + GAP) - GAP;
    let columns_h = if labels.columns.is_empty() { 0 } else { GAP + text_h };
    let legend_h = if labels.legend.is_some() { PAD + text_h } else { 0 };
    let legend_w = labels.legend.as_ref().map_or(0, |l| 128 + PAD + text::width(l, TEXT_PX));
    let width = (left + grid_w + PAD).max(PAD + legend_w + PAD);
    let height = PAD + grid_h + columns_h + legend_h + PAD;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        let row = row.to_device(tch::Device::Cpu).to_kind(Kind::Float);
        let c = row.size()[1] as usize;
        let data = Vec::<f32>::try_from(&row.flatten(0, -1)).map_err(|e| Error::run(path, e.to_string()))?;
        let top = PAD + r as u32 * (cell_h + GAP);
        if let Some(label) = labels.rows.get(r) {
            let y = top + (cell_h.saturating_sub(text_h)) / 2;
            text::draw(&mut canvas, (PAD as i32, y as i32), label, TEXT_PX, INK, path)?;
        }
        for i in 0..cols.min(row.size()[0] as usize) {
            let cell_left = left + i as u32 * (cell_w + GAP);
            // A thin frame, so that a white (or black) cell is still seen as a cell.
            let frame = image::Rgb([170, 170, 170]);
            for x in cell_left - 1..=cell_left + cell_w {
                canvas.put_pixel(x, top - 1, frame);
                canvas.put_pixel(x, top + cell_h, frame);
            }
            for y in top - 1..=top + cell_h {
                canvas.put_pixel(cell_left - 1, y, frame);
                canvas.put_pixel(cell_left + cell_w, y, frame);
            }
            for y in 0..h * k {
                for x in 0..w * k {
                    let px = |ch: usize| {
                        let ch = ch.min(c - 1);
                        (data[((i * c + ch) * h + y / k) * w + x / k] * 255.0).round().clamp(0.0, 255.0) as u8
                    };
                    canvas.put_pixel(cell_left + x as u32, top + y as u32, image::Rgb([px(0), px(1), px(2)]));
                }
            }
        }
    }
    let below = PAD + grid_h + GAP;
    for (i, label) in labels.columns.iter().enumerate().take(cols) {
        let centre = left + i as u32 * (cell_w + GAP) + cell_w / 2;
        let x = centre.saturating_sub(text::width(label, TEXT_PX) / 2);
        text::draw(&mut canvas, (x as i32, below as i32), label, TEXT_PX, INK, path)?;
    }
    if let Some(legend) = &labels.legend {
        let y = PAD + grid_h + columns_h + PAD;
        for x in 0..128u32 {
            let v = (x * 255 / 127) as u8;
            for dy in 0..text_h {
                canvas.put_pixel(PAD + x, y + dy, image::Rgb([v, v, v]));
            }
        }
        text::draw(&mut canvas, ((PAD + 128 + PAD) as i32, y as i32), legend, TEXT_PX, INK, path)?;
    }
    crate::files::write_png_atomic(path, &canvas)
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
    let partner_weight = match &out.first_weight {
        Some(m) => (-m + 1.0).expand(shape, false).contiguous(),
        None => (-&out.targets.lam + 1.0).view([n, 1, 1, 1]).expand(shape, false).contiguous(),
    };
    let rows =
        [to_unit(images, mean, std), to_unit(&partner, mean, std), partner_weight, to_unit(&out.images, mean, std)];
    let lam = lambdas(&out)?;
    let labels = GridLabels {
        rows: ["first", "partner", "partner weight", "mixed"].map(String::from).to_vec(),
        columns: lam.iter().map(|l| format!("λ={l:.2}")).collect(),
        legend: Some("partner weight 0 ... 1; λ = weight of the first image's label".into()),
    };
    write_grid(&rows, &labels, path)?;
    Ok(out)
}

/// The label weight λ of each sample's first image, on the host.
pub fn lambdas(batch: &MixedBatch) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(&batch.targets.lam.to_kind(Kind::Double).to_device(tch::Device::Cpu))?)
}
