//! Fine-grained datasets in their official layouts, decoded on demand as image folders are:
//! CUB-200-2011 (`images.txt`, `image_class_labels.txt`, `train_test_split.txt`, `classes.txt`,
//! `images/`; 5,994 training and 5,794 test images of 200 classes) and FGVC-Aircraft 2013b at
//! the variant level the reference trains on (`data/variants.txt`,
//! `data/images_variant_{trainval,test}.txt`, `data/images/<id>.jpg`; 6,667 and 3,333 images of
//! 100 classes). Listing checks every line and that each image exists, naming the file and line;
//! the images themselves are decoded when read. Touches only the files it lists.
use super::folder::{folder_info, FolderDataset};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The lines of a text file with their 1-based numbers, blank lines left out.
fn lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l.trim().into())).collect())
}

/// `<id> <rest>` lines of `path` as a map id → rest, refusing a line without both or an id seen
/// before.
fn id_table(path: &Path) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (n, line) in lines(path)? {
        let Some((id, rest)) = line.split_once(char::is_whitespace) else {
            return Err(Error::data(path, format!("line {n}: expected `<id> <value>`, found `{line}`")));
        };
        if out.insert(id.to_string(), rest.trim().to_string()).is_some() {
            return Err(Error::data(path, format!("line {n}: image id `{id}` appears twice")));
        }
    }
    Ok(out)
}

/// Where CUB-200-2011's files may sit below the given path: itself, or the folder its archive
/// unpacks to.
pub(super) const CUB_FOLDERS: [&str; 2] = ["", "CUB_200_2011"];
/// Where FGVC-Aircraft's list files may sit: the path itself, `data/`, or the archive's folder.
pub(super) const AIRCRAFT_FOLDERS: [&str; 3] = ["", "data", "fgvc-aircraft-2013b/data"];

/// The first of `folders` below `root` that holds `marker`.
fn layout_dir(root: &Path, folders: &[&str], marker: &str, what: &str) -> Result<PathBuf> {
    folders.iter().map(|f| root.join(f)).find(|d| d.join(marker).is_file()).ok_or_else(|| {
        let places = folders.iter().map(|f| if f.is_empty() { "this folder".to_string() } else { format!("`{f}/`") });
        let msg = format!("not the {what} layout: no `{marker}` in {}", places.collect::<Vec<_>>().join(", "));
        Error::data(root, msg)
    })
}

fn existing(path: PathBuf, list: &Path, n: usize) -> Result<PathBuf> {
    match path.is_file() {
        true => Ok(path),
        false => Err(Error::data(list, format!("line {n}: image `{}` does not exist", path.display()))),
    }
}

/// CUB-200-2011 at `root` (the `CUB_200_2011/` folder or the folder holding it): the official
/// split, labels 0-based in `classes.txt` order.
pub fn load_cub200(root: &Path) -> Result<(FolderDataset, FolderDataset)> {
    let dir = layout_dir(root, &CUB_FOLDERS, "images.txt", "CUB-200-2011")?;
    let class_file = dir.join("classes.txt");
    let classes: Vec<String> = lines(&class_file)?
        .into_iter()
        .map(|(_, l)| l.split_once(char::is_whitespace).map_or(l.clone(), |(_, name)| name.trim().to_string()))
        .collect();
    let (label_file, split_file) = (dir.join("image_class_labels.txt"), dir.join("train_test_split.txt"));
    let (labels, split) = (id_table(&label_file)?, id_table(&split_file)?);
    let images_file = dir.join("images.txt");
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (n, line) in lines(&images_file)? {
        let bad = |msg: String| Error::data(&images_file, format!("line {n}: {msg}"));
        let (id, rel) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(format!("expected `<id> <path>`, found `{line}`")))?;
        let label = match labels.get(id).map(|l| l.parse::<usize>()) {
            Some(Ok(l)) if (1..=classes.len()).contains(&l) => l as i64 - 1,
            Some(_) => {
                return Err(bad(format!(
                    "image {id}'s class in {} is not in 1..={}",
                    label_file.display(),
                    classes.len()
                )))
            }
            None => return Err(bad(format!("image {id} has no class in {}", label_file.display()))),
        };
        let path = existing(dir.join("images").join(rel.trim()), &images_file, n)?;
        match split.get(id).map(String::as_str) {
            Some("1") => train.push((path, label)),
            Some("0") => test.push((path, label)),
            _ => return Err(bad(format!("image {id} is neither 1 (train) nor 0 (test) in {}", split_file.display()))),
        }
    }
    finish("cub200", classes, train, test, &images_file)
}

/// FGVC-Aircraft 2013b at `root` (`fgvc-aircraft-2013b/`, its `data/` folder, or the folder
/// holding it): variants, `trainval` for training and `test` for evaluation (as the reference),
/// labels 0-based in `variants.txt` order.
pub fn load_aircraft(root: &Path) -> Result<(FolderDataset, FolderDataset)> {
    let dir = layout_dir(root, &AIRCRAFT_FOLDERS, "variants.txt", "FGVC-Aircraft")?;
    let classes: Vec<String> = lines(&dir.join("variants.txt"))?.into_iter().map(|(_, l)| l).collect();
    let index: HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();
    let split = |name: &str| -> Result<Vec<(PathBuf, i64)>> {
        let list = dir.join(format!("images_variant_{name}.txt"));
        let mut items = Vec::new();
        for (n, line) in lines(&list)? {
            let Some((id, variant)) = line.split_once(char::is_whitespace) else {
                return Err(Error::data(&list, format!("line {n}: expected `<image id> <variant>`, found `{line}`")));
            };
            let label = *index
                .get(variant.trim())
                .ok_or_else(|| Error::data(&list, format!("line {n}: variant `{variant}` is not in variants.txt")))?;
            items.push((existing(dir.join("images").join(format!("{id}.jpg")), &list, n)?, label));
        }
        Ok(items)
    };
    let (train, test) = (split("trainval")?, split("test")?);
    finish("aircraft", classes, train, test, &dir.join("images_variant_trainval.txt"))
}

/// The two splits, refusing an empty one or a class without training images (named).
fn finish(
    name: &str,
    classes: Vec<String>,
    train: Vec<(PathBuf, i64)>,
    test: Vec<(PathBuf, i64)>,
    list: &Path,
) -> Result<(FolderDataset, FolderDataset)> {
    if train.is_empty() || test.is_empty() {
        return Err(Error::data(
            list,
            format!("{} training and {} test images: both splits need some", train.len(), test.len()),
        ));
    }
    let mut seen = vec![false; classes.len()];
    train.iter().for_each(|(_, l)| seen[*l as usize] = true);
    if let Some(c) = seen.iter().position(|s| !s) {
        return Err(Error::data(list, format!("class `{}` has no training images", classes[c])));
    }
    let info = folder_info(name, classes);
    Ok((FolderDataset::new(info.clone(), train), FolderDataset::new(info, test)))
}
