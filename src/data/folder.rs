//! Image-folder datasets decoded on demand: `root/{train,val|test}/<class>/*.{png,jpg,jpeg}` and the
//! Tiny-ImageNet-200 layout (`train/<wnid>/images/*`, `val/images/*` + `val/val_annotations.txt`).
//! Listing validates the layout; decoding errors name the file when the image is read.
use super::dataset::{Dataset, DatasetInfo, Decoded, RawImage, Window, WindowedImage};
use super::jpeg;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

pub struct FolderDataset {
    info: DatasetInfo,
    items: Vec<(PathBuf, i64)>,
}

impl FolderDataset {
    /// A dataset of these (image file, label) pairs, decoded when read.
    pub(super) fn new(info: DatasetInfo, items: Vec<(PathBuf, i64)>) -> Self {
        FolderDataset { info, items }
    }

    pub fn items(&self) -> &[(PathBuf, i64)] {
        &self.items
    }
}

impl std::fmt::Debug for FolderDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FolderDataset({}, {} images)", self.info.name, self.items.len())
    }
}

impl Dataset for FolderDataset {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn label(&self, index: usize) -> i64 {
        self.items[index].1
    }
    fn load(&self, index: usize) -> Result<RawImage> {
        decode_rgb(&self.items[index].0)
    }
    fn load_window(&self, index: usize, pick: &mut dyn FnMut(usize, usize) -> Window) -> Result<WindowedImage> {
        let path = &self.items[index].0;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if let Some(header) = partially_decodable(&bytes) {
            let window = pick(header.height, header.width);
            return decode_window(path, &bytes, header, window).or_else(|partial| {
                // libjpeg refused what the marker walk let through (a damaged table the whole-
                // image decoder tolerates): that decoder decides, as `data verify`'s does, for
                // the window already drawn from the header's size.
                let image = decode_rgb_bytes(path, &bytes)?;
                if (image.height, image.width) != (header.height, header.width) {
                    return Err(partial);
                }
                Ok(WindowedImage { image: Decoded::Planar(image), window })
            });
        }
        let image = decode_rgb_bytes(path, &bytes)?;
        let window = pick(image.height, image.width);
        Ok(WindowedImage { image: Decoded::Planar(image), window })
    }
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
}

/// The most bytes decoding one image may hold at once, counted over every copy: the decoder's
/// own buffer, the RGB conversion and the planar copy (a 65 KB 1-bit PNG of 23170² pixels once
/// took 3.6–3.9 GB and 19 s, per loader worker). 512 MiB: about 80 megapixels.
pub const DECODE_BUDGET_BYTES: u64 = 512 << 20;

/// Decodes any PNG/JPEG into 3-channel CHW bytes (grey images are replicated), refusing one
/// whose decoding would pass [`DECODE_BUDGET_BYTES`] before any pixel is decoded.
pub fn decode_rgb(path: &Path) -> Result<RawImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb_bytes(path, &bytes)
}

const TRUNCATED_JPEG: &str =
    "JPEG data ends before its end-of-image marker (a truncated file: fetch it again or remove it)";

/// Refuses an image of `w × h` pixels whose decoding would take `need` bytes, past the budget.
fn within_budget(path: &Path, w: u64, h: u64, need: u64) -> Result<()> {
    if need > DECODE_BUDGET_BYTES {
        let msg = format!(
            "{w}×{h} pixels would take {} MiB to decode, more than the {} MiB one image may (a decompression bomb, or far larger than training needs; downscale it)",
            need >> 20,
            DECODE_BUDGET_BYTES >> 20
        );
        return Err(Error::data(path, msg));
    }
    Ok(())
}

/// [`decode_rgb`] on the file's bytes, read already.
fn decode_rgb_bytes(path: &Path, bytes: &[u8]) -> Result<RawImage> {
    use image::ImageDecoder;
    // The format is read from the bytes (a JPEG saved as `.png` decodes), the extension only
    // picks the files.
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    let reader = reader.with_guessed_format().map_err(|e| Error::io(path, e))?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg::has_end(bytes) {
        // The JPEG decoder fills what is missing with grey and reports nothing; Pillow (and so
        // torchvision) refuses such a file.
        return Err(Error::data(path, TRUNCATED_JPEG));
    }
    let cannot = |e: image::ImageError| Error::data(path, format!("cannot decode image: {e}"));
    let decoder = reader.into_decoder().map_err(cannot)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    within_budget(path, w.into(), h.into(), decoder.total_bytes().saturating_add(pixels.saturating_mul(6)))?;
    let img = image::DynamicImage::from_decoder(decoder).map_err(cannot)?.to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0u8; 3 * h * w];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * h * w + i] = px.0[c];
        }
    }
    Ok(RawImage::new(3, h, w, data))
}

/// The header of a JPEG this build can decode in part (libjpeg-turbo present, grey or colour,
/// complete); anything else goes through [`decode_rgb_bytes`], which also names what is wrong.
fn partially_decodable(bytes: &[u8]) -> Option<jpeg::Header> {
    if !jpeg::PARTIAL_DECODING || !jpeg::is_jpeg(bytes) {
        return None;
    }
    let found = jpeg::markers(bytes);
    found.frame.filter(|h| found.complete && matches!(h.components, 1 | 3) && h.width > 0 && h.height > 0)
}

/// Decodes the part of a JPEG that `window` (plus its margin) covers, at the largest DCT
/// downscale the window allows, and returns the window in the decoded pixels.
fn decode_window(path: &Path, bytes: &[u8], header: jpeg::Header, window: Window) -> Result<WindowedImage> {
    let (w, h) = (header.width as u64, header.height as u64);
    // libjpeg holds a progressive file's coefficients for the whole image: the same budget as a
    // full decode.
    within_budget(path, w, h, (w * h).saturating_mul(header.components as u64 + 6))?;
    let limit = jpeg::scale_for(window.height, window.width, window.out_h, window.out_w).min(window.max_scale);
    let scale = [8, 4, 2].into_iter().find(|&s| s <= limit).unwrap_or(1);
    // The scaled pixels `[lo, hi)` the resampling of source span `[start, start+len)` reads: its
    // own, plus the filter's margin (in scaled pixels: the resampling runs on the scaled grid).
    let (s, margin) = (scale as f64, window.margin as f64);
    let span = |start: f64, len: f64, n: usize| -> (usize, usize) {
        let scaled_n = n.div_ceil(scale);
        let lo = ((start / s).floor() - margin).max(0.0) as usize;
        let hi = ((((start + len) / s).ceil() + margin).max(0.0) as usize).min(scaled_n);
        let lo = lo.min(scaled_n - 1);
        (lo, hi.max(lo + 1))
    };
    let (top, bottom) = span(window.top, window.height, header.height);
    let (left, right) = span(window.left, window.width, header.width);
    let region =
        jpeg::ScaledRegion { scale, top, left, height: bottom.saturating_sub(top), width: right.saturating_sub(left) };
    let image = jpeg::decode_region(bytes, header, region)
        .map_err(|e| Error::data(path, format!("cannot decode JPEG: {e}")))?;
    let window = Window {
        top: window.top / s - top as f64,
        left: window.left / s - left as f64,
        height: window.height / s,
        width: window.width / s,
        ..window
    };
    Ok(WindowedImage { image, window })
}

fn is_image(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

/// The class names of a `train/` folder: its sub-folders, sorted (torchvision's ImageFolder order).
pub(super) fn class_folders(train_dir: &Path) -> Result<Vec<String>> {
    let classes: Vec<String> = sorted_entries(train_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if classes.is_empty() {
        return Err(Error::data(train_dir, "no class folders"));
    }
    Ok(classes)
}

/// The (image, label) pairs of `dir/<class>/*`, labels from `index`; a class folder `index` lacks
/// and an empty class folder are errors naming the folder.
pub(super) fn class_folder_items(dir: &Path, index: &HashMap<&str, i64>) -> Result<Vec<(PathBuf, i64)>> {
    let mut items = Vec::new();
    for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::data(&class_dir, "not a named folder"))?;
        let label = *index
            .get(name.as_str())
            .ok_or_else(|| Error::data(&class_dir, "class folder not present in `train/` (unknown class)"))?;
        items.extend(non_empty(&class_dir, images_in(&class_dir)?)?.into_iter().map(|p| (p, label)));
    }
    if items.is_empty() {
        return Err(Error::data(dir, "no images (.png/.jpg/.jpeg) found"));
    }
    Ok(items)
}

/// The entries of `dir`, sorted, without hidden ones (`.ipynb_checkpoints/`, `.DS_Store`: tools
/// put them there, they are never classes or images).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    Ok(out)
}

/// The image files (`.png`/`.jpg`/`.jpeg`, not hidden) directly in `dir`, sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect())
}

/// The images of a class folder, which must have some: an empty class would be a class the model
/// is asked to predict but never sees (or is never tested on).
fn non_empty(class_dir: &Path, images: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    if images.is_empty() {
        return Err(Error::data(class_dir, "class folder has no images (.png/.jpg/.jpeg); add images or remove it"));
    }
    Ok(images)
}

/// The description of a decoded-RGB dataset: 3 channels, ImageNet's mean and std.
pub(super) fn folder_info(name: &str, class_names: Vec<String>) -> DatasetInfo {
    DatasetInfo {
        name: name.into(),
        num_classes: class_names.len(),
        channels: 3,
        mean: IMAGENET_MEAN.to_vec(),
        std: IMAGENET_STD.to_vec(),
        class_names,
    }
}

/// `root/train/<class>/*` and `root/val/<class>/*` (or `root/test/...`). Classes come from the
/// training folder; a class folder in the evaluation split that training lacks is an error.
pub fn load_image_folder(root: &Path) -> Result<(FolderDataset, FolderDataset)> {
    let train_dir = root.join("train");
    let eval_dir = ["val", "test"].iter().map(|s| root.join(s)).find(|p| p.is_dir()).ok_or_else(|| {
        Error::data(root, "expected `train/` and `val/` (or `test/`) folders with one sub-folder per class")
    })?;
    if !train_dir.is_dir() {
        return Err(Error::data(root, "missing `train/` folder"));
    }
    let classes = class_folders(&train_dir)?;
    let index: HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let (train_items, eval_items) = (class_folder_items(&train_dir, &index)?, class_folder_items(&eval_dir, &index)?);
    drop(index);
    let train = FolderDataset { info: folder_info("image_folder", classes.clone()), items: train_items };
    let eval = FolderDataset { info: folder_info("image_folder", classes), items: eval_items };
    Ok((train, eval))
}

/// Tiny-ImageNet-200: 200 classes from `wnids.txt` (or the train folders), validation labels from
/// `val/val_annotations.txt`.
pub fn load_tiny_imagenet(root: &Path) -> Result<(FolderDataset, FolderDataset)> {
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(Error::data(root, "missing `train/` (expected the Tiny-ImageNet-200 layout)"));
    }
    let wnids_file = root.join("wnids.txt");
    let classes: Vec<String> = if wnids_file.is_file() {
        std::fs::read_to_string(&wnids_file)
            .map_err(|e| Error::io(&wnids_file, e))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        sorted_entries(&train_dir)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    };
    let index: HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let mut train_items = Vec::new();
    for (wnid, &label) in classes.iter().map(|c| (c, &index[c.as_str()])) {
        let dir = train_dir.join(wnid).join("images");
        if !dir.is_dir() {
            return Err(Error::data(&dir, format!("missing training folder of class `{wnid}`")));
        }
        train_items.extend(non_empty(&dir, images_in(&dir)?)?.into_iter().map(|p| (p, label)));
    }
    let ann = root.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&ann).map_err(|e| Error::io(&ann, e))?;
    let mut val_items = Vec::new();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(Error::data(&ann, format!("line {}: expected `<file>\\t<wnid>...`", line_no + 1)));
        };
        let label = *index
            .get(wnid.trim())
            .ok_or_else(|| Error::data(&ann, format!("line {}: unknown class `{wnid}`", line_no + 1)))?;
        let path = root.join("val").join("images").join(file.trim());
        if !path.is_file() {
            return Err(Error::data(&ann, format!("line {}: image `{}` does not exist", line_no + 1, path.display())));
        }
        val_items.push((path, label));
    }
    Ok((
        FolderDataset { info: folder_info("tiny_imagenet", classes.clone()), items: train_items },
        FolderDataset { info: folder_info("tiny_imagenet", classes), items: val_items },
    ))
}
