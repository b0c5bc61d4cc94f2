//! Line charts as PNG, drawn with `plotters` in the bundled font of [`super::text`]: axes with
//! rounded ticks, one coloured line per series with a dot per point, and a legend under the plot.
//! Any values can be charted: points that are not finite are left out, and values beyond ±1e300
//! are drawn at ±1e300, so the axes always span a finite range and every point lies on the
//! canvas. Writes only the chart's file.
use super::text;
use crate::{Error, Result};
use image::{Rgb, RgbImage};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
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

/// The chart's size in pixels.
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 560;
/// Values beyond ±`LIMIT` are drawn at ±`LIMIT`: the span of the axes (and its 5% margin) stays a
/// finite number.
const LIMIT: f64 = 1e300;
const TEXT_PX: f64 = 16.0;
const TITLE_PX: f64 = 22.0;
const MARGIN: u32 = 16;
/// One legend row: its height, and the length of the line drawn before each name.
const LEGEND_ROW: u32 = 24;
const LEGEND_LINE: u32 = 24;
const INK: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);

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
/// wide, wider than the chart), with the digits the step needs (at most 8 after the point).
pub fn tick_text(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize };
    if v.abs() >= 1e6 || decimals > 5 {
        // As many digits as tell neighbouring ticks apart: 2 to 8 after the point.
        let digits = (v.abs().log10().floor() - step.abs().log10().floor()).clamp(2.0, 8.0) as usize;
        return format!("{v:.digits$e}");
    }
    format!("{v:.decimals$}")
}

/// The colour (RGB) of the `k`-th series.
pub fn colour(k: usize) -> [u8; 3] {
    PALETTE[k % PALETTE.len()]
}

/// [`colour`] as plotters takes it.
fn pen(k: usize) -> RGBColor {
    let [r, g, b] = colour(k);
    RGBColor(r, g, b)
}

/// The points of `s` that can be drawn: finite ones, each value kept within ±[`LIMIT`].
fn drawable(s: &Series) -> Vec<(f64, f64)> {
    let clamp = |v: f64| v.clamp(-LIMIT, LIMIT);
    s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (clamp(x), clamp(y))).collect()
}

/// Where the axes run and where their ticks are.
struct Axes {
    x: (f64, f64),
    y: (f64, f64),
    x_ticks: Vec<f64>,
    y_ticks: Vec<f64>,
}

impl Axes {
    /// Axes around `points` (all within ±[`LIMIT`]): x exactly from the first to the last value
    /// (a single one in the middle of a span of 1; whole ticks when all are whole, e.g. epochs), y with 5% to spare. Values
    /// that are equal (to a millionth) get ±10% of their size around them, or ±1 around 0.
    fn around(points: &[(f64, f64)]) -> Axes {
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY), |(a, b, c, d), &(x, y)| {
                (a.min(x), b.max(x), c.min(y), d.max(y))
            });
        if points.is_empty() {
            (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
        }
        if x_hi - x_lo < 1e-12 {
            // One x value: in the middle of a span of 1.
            (x_lo, x_hi) = (x_lo - 0.5, x_lo + 0.5);
        }
        let size = y_hi.abs().max(y_lo.abs());
        let pad = if y_hi - y_lo > 1e-6 * size {
            (y_hi - y_lo) * 0.05
        } else if size > 0.0 {
            0.1 * size
        } else {
            1.0
        };
        (y_lo, y_hi) = (y_lo - pad, y_hi + pad);
        let whole_x = points.iter().all(|(x, _)| x.fract() == 0.0);
        let x_ticks = ticks(x_lo, x_hi, 8, whole_x);
        Axes { x: (x_lo, x_hi), y: (y_lo, y_hi), x_ticks, y_ticks: ticks(y_lo, y_hi, 6, false) }
    }
}

/// One axis for plotters: the linear map of `range`, with ticks at `ticks` (samix's own, from
/// [`ticks`], rather than plotters' choice, so that their labels can be [`tick_text`]) and no
/// lighter lines between them.
struct Axis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Axis {
    // Each label is formatted by the mesh's formatter (`tick_text`); this only satisfies plotters.
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The step between the first two ticks (1 when there are fewer).
fn step(ticks: &[f64]) -> f64 {
    ticks.get(1).zip(ticks.first()).map_or(1.0, |(b, a)| b - a)
}

/// Where each legend entry goes: its left edge and row, entries side by side from `left`,
/// wrapping onto a new row when the next would pass the right edge.
fn legend_layout(names: &[&str], left: u32) -> Vec<(u32, u32)> {
    let (mut x, mut row) = (left, 0);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let entry_w = LEGEND_LINE + 8 + text::width(name, TEXT_PX) + 24;
        if x + entry_w > WIDTH && x > left {
            (x, row) = (left, row + 1);
        }
        out.push((x, row));
        x += entry_w;
    }
    out
}

impl LineChart {
    /// Draws the chart and writes it as a PNG (atomically).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        text::register(path)?;
        let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255]));
        self.draw(&mut canvas, path)?;
        crate::files::write_png_atomic(path, &canvas)
    }

    fn draw(&self, canvas: &mut RgbImage, path: &Path) -> Result<()> {
        let err = |e: DrawingAreaErrorKind<_>| Error::picture(path, e.to_string());
        let lines: Vec<Vec<(f64, f64)>> = self.series.iter().map(drawable).collect();
        let axes = Axes::around(&lines.concat());
        let (x_step, y_step) = (step(&axes.x_ticks), step(&axes.y_ticks));
        // The tick labels' column keeps at most a quarter of the width, whatever the values.
        let y_label_w = axes.y_ticks.iter().map(|t| text::width(&tick_text(*t, y_step), TEXT_PX)).max().unwrap_or(0);
        let y_area = y_label_w.min(WIDTH / 4) + 16 + 2 * TEXT_PX as u32;
        let names: Vec<&str> = self.series.iter().map(|s| s.name.as_str()).collect();
        let legend = legend_layout(&names, MARGIN + y_area);
        let legend_rows = legend.iter().map(|(_, row)| row + 1).max().unwrap_or(0).min(HEIGHT / 3 / LEGEND_ROW);
        let root = text::backend(canvas, path)?.into_drawing_area();
        let (upper, lower) = root.split_vertically(HEIGHT - legend_rows * LEGEND_ROW - MARGIN / 2);
        let mut chart = ChartBuilder::on(&upper)
            .caption(&self.title, text::style(TITLE_PX, INK))
            .margin(MARGIN)
            .x_label_area_size(2 * TEXT_PX as u32 + 24)
            .y_label_area_size(y_area)
            .build_cartesian_2d(
                Axis { range: axes.x.0..axes.x.1, ticks: axes.x_ticks.clone() },
                Axis { range: axes.y.0..axes.y.1, ticks: axes.y_ticks.clone() },
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_label_formatter(&|v| tick_text(*v, x_step))
            .y_label_formatter(&|v| tick_text(*v, y_step))
            .label_style(text::style(TEXT_PX, INK))
            .axis_desc_style(text::style(TEXT_PX, INK))
            .bold_line_style(GRID)
            .axis_style(INK.stroke_width(2))
            .draw()
            .map_err(err)?;
        for (k, points) in lines.iter().enumerate() {
            let c = pen(k);
            chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2))).map_err(err)?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(err)?;
        }
        draw_legend(&lower, &names, &legend).map_err(err)?;
        root.present().map_err(err)
    }
}

/// The legend in `area` (the strip under the plot): per series a short line in its colour and
/// its name, at the places [`legend_layout`] gave.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[&str],
    places: &[(u32, u32)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (k, (name, &(x, row))) in names.iter().zip(places).enumerate() {
        let (x, top) = (x as i32, (row * LEGEND_ROW) as i32);
        // The line at the middle of the capitals, which start at `top`.
        let mid = top + (TEXT_PX * 0.73 / 2.0).round() as i32;
        let line = [(x, mid), (x + LEGEND_LINE as i32, mid)];
        area.draw(&PathElement::new(line, pen(k).stroke_width(3)))?;
        let at = (x + LEGEND_LINE as i32 + 8, top + text::cap_offset(TEXT_PX));
        area.draw_text(name, &text::style(TEXT_PX, INK), at)?;
    }
    Ok(())
}
