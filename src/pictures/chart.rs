//! Line charts as PNG (drawn here, with the built-in font: no plotting or font dependency): axes
//! with rounded ticks, one coloured line per series with a dot per point, and a legend.
use super::font;
use crate::Result;
use image::{Rgb, RgbImage};
use std::path::Path;

/// One line: its legend name and (x, y) points in order of x.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: title, axis names, lines.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// Distinct colours (Tableau 10), reused in order.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;
const TEXT: u32 = 2;

/// "Nice" tick positions covering [lo, hi]: about `n` steps of 1, 2 or 5 × 10^k (whole steps
/// when `integer`, e.g. epochs).
pub fn ticks(lo: f64, hi: f64, n: usize, integer: bool) -> Vec<f64> {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / n.max(1) as f64;
    let raw = if integer { raw.max(1.0) } else { raw };
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A tick's text: as few decimals as its step needs; scientific notation for values too large or
/// too finely stepped to print in a few digits (a value of 1e100 would otherwise be 101 digits
/// wide, wider than the chart).
pub fn tick_text(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    if v.abs() >= 1e6 || decimals > 5 {
        return format!("{v:.2e}");
    }
    format!("{v:.decimals$}")
}

fn line(canvas: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), color: Rgb<u8>, width: i64) {
    // One dot per pixel of length, at most a few canvas spans (a segment that long is mostly off
    // the canvas; the bound keeps any coordinates from making this loop endless).
    let (w, h) = canvas.dimensions();
    let cap = 4.0 * f64::from(w + h);
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().clamp(1.0, cap) as i64;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = ((x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64);
        dot(canvas, x, y, width, color);
    }
}

fn dot(canvas: &mut RgbImage, x: i64, y: i64, r: i64, color: Rgb<u8>) {
    let (w, h) = canvas.dimensions();
    for dy in -r / 2..=r / 2 {
        for dx in -r / 2..=r / 2 {
            let (px, py) = (x + dx, y + dy);
            if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                canvas.put_pixel(px as u32, py as u32, color);
            }
        }
    }
}

impl LineChart {
    /// Draws the chart and writes it as a PNG (atomically).
    // Over 80 lines: one drawing pass over a fixed layout, to be replaced whole when the charts
    // move to a plotting crate (issue 23, item 5).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
        let ink = Rgb([30, 30, 30]);
        let grid = Rgb([225, 225, 225]);
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY), |(a, b, c, d), &(x, y)| {
                (a.min(x), b.max(x), c.min(y), d.max(y))
            });
        if points.is_empty() {
            (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
        }
        if x_hi - x_lo < 1e-12 {
            x_hi = x_lo + 1.0;
        }
        let pad = (y_hi - y_lo).abs().max(1e-6 * y_hi.abs().max(1.0)) * 0.05;
        (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
        let y_ticks = ticks(y_lo, y_hi, 6, false);
        let whole_x = points.iter().all(|(x, _)| x.fract() == 0.0);
        let x_ticks = ticks(x_lo, x_hi, 8, whole_x);
        let y_step = y_ticks.get(1).zip(y_ticks.first()).map_or(1.0, |(b, a)| b - a);
        let x_step = x_ticks.get(1).zip(x_ticks.first()).map_or(1.0, |(b, a)| b - a);
        let y_label_w = y_ticks.iter().map(|t| font::text_width(&tick_text(*t, y_step), TEXT)).max().unwrap_or(0);
        // The plot keeps at least half the width whatever the labels.
        let y_label_w = y_label_w.min(WIDTH / 4);
        let text_h = font::HEIGHT * TEXT;
        // Plot area.
        let (left, right) = (20 + text_h + 12 + y_label_w + 8, WIDTH - 24);
        // Below the plot: tick labels, the x label, then the legend row.
        let (top, bottom) = (20 + text_h + 16, HEIGHT - (20 + 3 * text_h + 36));
        let sx = |x: f64| left as f64 + (x - x_lo) / (x_hi - x_lo) * (right - left) as f64;
        let sy = |y: f64| bottom as f64 - (y - y_lo) / (y_hi - y_lo) * (bottom - top) as f64;
        for &t in &y_ticks {
            let y = sy(t);
            line(&mut canvas, (left as f64, y), (right as f64, y), grid, 1);
            let text = tick_text(t, y_step);
            let x = left - 8 - font::text_width(&text, TEXT);
            font::draw_text(&mut canvas, x, (y as u32).saturating_sub(text_h / 2), &text, TEXT, ink);
        }
        for &t in &x_ticks {
            let x = sx(t);
            line(&mut canvas, (x, top as f64), (x, bottom as f64), grid, 1);
            let text = tick_text(t, x_step);
            let tx = (x as u32).saturating_sub(font::text_width(&text, TEXT) / 2);
            font::draw_text(&mut canvas, tx, bottom + 8, &text, TEXT, ink);
        }
        line(&mut canvas, (left as f64, top as f64), (left as f64, bottom as f64), ink, 2);
        line(&mut canvas, (left as f64, bottom as f64), (right as f64, bottom as f64), ink, 2);
        let title_x = (WIDTH.saturating_sub(font::text_width(&self.title, TEXT))) / 2;
        font::draw_text(&mut canvas, title_x, 16, &self.title, TEXT, ink);
        let x_label_x = (left + right).saturating_sub(font::text_width(&self.x_label, TEXT)) / 2;
        font::draw_text(&mut canvas, x_label_x, bottom + 8 + text_h + 8, &self.x_label, TEXT, ink);
        // The y label, one character per line (the font does not rotate).
        let y_label: Vec<char> = self.y_label.chars().collect();
        let y0 = ((top + bottom) / 2).saturating_sub(y_label.len() as u32 * (text_h + 2) / 2);
        for (i, c) in y_label.iter().enumerate() {
            font::draw_text(&mut canvas, 20, y0 + i as u32 * (text_h + 2), &c.to_string(), TEXT, ink);
        }
        for (k, s) in self.series.iter().enumerate() {
            let [r, g, b] = PALETTE[k % PALETTE.len()];
            let color = Rgb([r, g, b]);
            let pts: Vec<(f64, f64)> =
                s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (sx(x), sy(y))).collect();
            for pair in pts.windows(2) {
                line(&mut canvas, pair[0], pair[1], color, 2);
            }
            for &(x, y) in &pts {
                dot(&mut canvas, x as i64, y as i64, 5, color);
            }
        }
        // The legend: one row under the chart, entries side by side (wrapping upwards if needed).
        let (mut lx, mut ly) = (left, HEIGHT - 20 - text_h);
        for (k, s) in self.series.iter().enumerate() {
            let [r, g, b] = PALETTE[k % PALETTE.len()];
            let entry_w = 28 + font::text_width(&s.name, TEXT) + 24;
            if lx + entry_w > WIDTH && lx > left {
                (lx, ly) = (left, ly.saturating_sub(text_h + 6));
            }
            let mid = (ly + text_h / 2) as f64;
            line(&mut canvas, (lx as f64, mid), ((lx + 20) as f64, mid), Rgb([r, g, b]), 3);
            font::draw_text(&mut canvas, lx + 28, ly, &s.name, TEXT, ink);
            lx += entry_w;
        }
        crate::files::write_png_atomic(path, &canvas)
    }
}
