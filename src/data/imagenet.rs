//! ImageNet-1k (ILSVRC-2012) as it is usually laid out: `train/<wnid>/*.JPEG`, and the 50,000
//! validation images either in class folders (`val/<wnid>/*.JPEG`) or flat (`val/*.JPEG`) with a
//! label list beside them: `val.txt` (or `meta/val.txt`, the reference's `data/meta/imagenet`),
//! one `<file> <label>` per line, the label a 0-based class index (the reference's ImageList
//! format) or a wnid. Classes are the training folders, sorted (torchvision's and the
//! reference's order). Reads the folders and the list; decodes nothing.
use super::dataset::DatasetInfo;
use super::folder::{class_folder_items, class_folders, folder_info, images_in, FolderDataset};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a flat validation folder's labels may be, in the order they are looked for.
pub const VAL_LISTS: [&str; 3] = ["val.txt", "meta/val.txt", "val/val.txt"];

fn info(classes: Vec<String>) -> DatasetInfo {
    folder_info("imagenet", classes)
}

/// The training and validation splits at `root`.
pub fn load_imagenet(root: &Path) -> Result<(FolderDataset, FolderDataset)> {
    let (train_dir, val_dir) = (root.join("train"), root.join("val"));
    if !train_dir.is_dir() || !val_dir.is_dir() {
        return Err(Error::data(root, "expected the ImageNet layout: `train/<wnid>/` and `val/` folders"));
    }
    let classes = class_folders(&train_dir)?;
    let index: HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let train = class_folder_items(&train_dir, &index)?;
    let val_has_classes = std::fs::read_dir(&val_dir)
        .map_err(|e| Error::io(&val_dir, e))?
        .filter_map(|e| e.ok())
        .any(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'));
    let val = if val_has_classes { class_folder_items(&val_dir, &index)? } else { flat_val(root, &index)? };
    drop(index);
    Ok((FolderDataset::new(info(classes.clone()), train), FolderDataset::new(info(classes), val)))
}

/// The flat validation folder's images with their labels from the first list of [`VAL_LISTS`]
/// found; every image must be listed, and every listed file must exist.
fn flat_val(root: &Path, index: &HashMap<&str, i64>) -> Result<Vec<(PathBuf, i64)>> {
    let val_dir = root.join("val");
    let Some(list) = VAL_LISTS.iter().map(|l| root.join(l)).find(|p| p.is_file()) else {
        let msg = format!(
            "the validation images are not in class folders and no label list was found ({}): give one `<file> <class index or wnid>` line per image (the devkit's ILSVRC2012_validation_ground_truth.txt numbers classes in meta.mat's order: scripts/imagenet_val_list.py converts it)",
            VAL_LISTS.join(", ")
        );
        return Err(Error::data(&val_dir, msg));
    };
    let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
    let mut labels: HashMap<String, i64> = HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |msg: String| Error::data(&list, format!("line {}: {msg}", n + 1));
        let mut fields = line.split_whitespace();
        let (Some(file), Some(label), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(at("expected `<file> <class index or wnid>`".into()));
        };
        let label = match label.parse::<i64>() {
            Ok(i) if (0..index.len() as i64).contains(&i) => i,
            Ok(i) => return Err(at(format!("class index {i} is outside 0..{}", index.len()))),
            Err(_) => *index.get(label).ok_or_else(|| at(format!("`{label}` is not a class of train/")))?,
        };
        // The reference's lists name files relative to the val folder; some prefix `val/`.
        let name = file.strip_prefix("val/").unwrap_or(file).to_string();
        if labels.insert(name.clone(), label).is_some() {
            return Err(at(format!("`{name}` is listed twice")));
        }
    }
    let images = images_in(&val_dir)?;
    let mut items = Vec::with_capacity(images.len());
    for path in images {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let label =
            labels.remove(&name).ok_or_else(|| Error::data(&path, format!("not listed in {}", list.display())))?;
        items.push((path, label));
    }
    if let Some(missing) = labels.keys().min() {
        let msg = format!("{} listed images are not in val/ (first: `{missing}`)", labels.len());
        return Err(Error::data(&list, msg));
    }
    if items.is_empty() {
        return Err(Error::data(&val_dir, "no images (.png/.jpg/.jpeg) found"));
    }
    Ok(items)
}
