//! The text on samix's pictures: DejaVu Sans, bundled by the `dejavu` crate and rendered by
//! `plotters` (its pure-Rust `ab_glyph` path). No system font is looked up, so a chart or grid
//! reads the same on a machine without fonts (CI). Registers the font with plotters once per
//! process and draws into in-memory RGB images; writes no files.
use crate::{Error, Result};
use image::RgbImage;
use plotters::backend::RGBPixel;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

/// The name the bundled font is registered under in plotters' font table.
pub const FAMILY: &str = "samix-dejavu-sans";

/// Makes the bundled font known to plotters (the first call does it; later calls only report the
/// outcome). `path` is the picture being drawn, named in the error.
pub fn register(path: &Path) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::picture(path, "the bundled DejaVu Sans font does not load"))
    }
}

/// Text of `px` pixels in `colour`, placed by its top-left corner.
pub fn style(px: f64, colour: RGBColor) -> TextStyle<'static> {
    TextStyle { font: (FAMILY, px).into_font(), color: colour.to_backend_color(), pos: Pos::new(HPos::Left, VPos::Top) }
}

/// The width in pixels of `text` at `px` (an estimate of 0.6 em a character if the font is not
/// registered: [`register`] reports that).
pub fn width(text: &str, px: f64) -> u32 {
    let estimate = || (text.chars().count() as f64 * px * 0.6).ceil() as u32;
    style(px, BLACK).font.box_size(text).map_or_else(|_| estimate(), |(w, _)| w)
}

/// How far below plotters' anchor to put text of `px` pixels so that its capitals start at the
/// anchor: plotters' ab_glyph path sets the baseline half an em below the anchor, and DejaVu's
/// capitals are 0.73 em tall.
pub fn cap_offset(px: f64) -> i32 {
    (px * 0.23).round() as i32
}

/// Draws `text` onto `canvas` with the top of its capitals at `y` and its left edge at `x`
/// (descenders reach about `px` below `y`); what falls outside the canvas is skipped. `path` is
/// the picture being drawn, named in an error.
pub fn draw(
    canvas: &mut RgbImage,
    (x, y): (i32, i32),
    text: &str,
    px: f64,
    colour: RGBColor,
    path: &Path,
) -> Result<()> {
    register(path)?;
    let area = backend(canvas, path)?.into_drawing_area();
    area.draw_text(text, &style(px, colour), (x, y + cap_offset(px)))
        .map_err(|e| Error::picture(path, e.to_string()))?;
    area.present().map_err(|e| Error::picture(path, e.to_string()))
}

/// A plotters backend drawing straight into `canvas` (whose pixels are plotters' RGB layout).
pub fn backend<'a>(canvas: &'a mut RgbImage, path: &Path) -> Result<BitMapBackend<'a, RGBPixel>> {
    let size = canvas.dimensions();
    BitMapBackend::with_buffer_and_format(canvas, size).map_err(|e| Error::picture(path, e.to_string()))
}
