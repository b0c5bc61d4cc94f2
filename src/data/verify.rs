//! `samix data verify`: recognises what a path holds, validates it with the same loaders training
//! uses, and compares md5 sums where they are known ([`super::checksum`]).
use super::checksum::{known_md5, md5_hex};
use super::config::DatasetKind;
use super::dataset::Dataset;
use super::{cifar, fine_grained, folder, idx, imagenet};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug)]
pub struct FileCheck {
    pub name: String,
    pub bytes: usize,
    pub md5: String,
    pub expected: Option<&'static str>,
}

impl FileCheck {
    pub fn matches(&self) -> Option<bool> {
        self.expected.map(|e| e == self.md5)
    }
}

#[derive(Debug)]
pub struct VerifyReport {
    pub dataset: String,
    pub train_records: usize,
    pub test_records: usize,
    pub num_classes: usize,
    pub files: Vec<FileCheck>,
}

impl VerifyReport {
    /// True when every file with a known checksum matches it.
    pub fn all_match(&self) -> bool {
        self.files.iter().all(|f| f.matches() != Some(false))
    }
}

/// Which kind of dataset `path` holds, from its layout alone (no full load).
pub fn detect(path: &Path) -> Result<DatasetKind> {
    if path.is_file() {
        let mut members = HashMap::new();
        cifar::read_archive_members(path, &["test.bin", "test_batch.bin"], &mut members)?;
        return match (members.contains_key("test.bin"), members.contains_key("test_batch.bin")) {
            (true, _) => Ok(DatasetKind::Cifar100),
            (_, true) => Ok(DatasetKind::Cifar10),
            _ => Err(Error::data(path, "not a CIFAR binary archive")),
        };
    }
    if !path.is_dir() {
        return Err(Error::data(path, "no such file or folder"));
    }
    for (kind, lay) in [(DatasetKind::Cifar100, &cifar::CIFAR100), (DatasetKind::Cifar10, &cifar::CIFAR10)] {
        if path.join(lay.test_files[0]).is_file() || path.join(lay.folder).join(lay.test_files[0]).is_file() {
            return Ok(kind);
        }
    }
    if ["t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"].iter().any(|n| path.join(n).is_file()) {
        // The format is shared, so checksums tell which of the two datasets this is: any file
        // matching Fashion-MNIST's decides (small label files first), so one modified file does
        // not change the verdict.
        for name in
            ["t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "train-images-idx3-ubyte"]
        {
            let (_, bytes) = idx::read_idx_file(path, name)?;
            if known_md5(DatasetKind::FashionMnist, name) == Some(md5_hex(&bytes).as_str()) {
                return Ok(DatasetKind::FashionMnist);
            }
        }
        return Ok(DatasetKind::Mnist);
    }
    if path.join("val").join("val_annotations.txt").is_file() {
        return Ok(DatasetKind::TinyImagenet);
    }
    if fine_grained::CUB_FOLDERS.iter().any(|d| path.join(d).join("train_test_split.txt").is_file()) {
        return Ok(DatasetKind::Cub200);
    }
    if fine_grained::AIRCRAFT_FOLDERS.iter().any(|d| path.join(d).join("images_variant_test.txt").is_file()) {
        return Ok(DatasetKind::Aircraft);
    }
    // A flat val/ with a label list is ImageNet's layout; class folders are any image folder.
    if path.join("train").is_dir() && imagenet::VAL_LISTS.iter().any(|l| path.join(l).is_file()) {
        return Ok(DatasetKind::Imagenet);
    }
    Ok(DatasetKind::ImageFolder)
}

/// Recognises the dataset at `path` ([`detect`]), loads it fully (all structural checks) and
/// hashes its files.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    match detect(path)? {
        kind @ (DatasetKind::Cifar10 | DatasetKind::Cifar100) => {
            let lay = cifar::layout(kind);
            let names: Vec<&str> = lay.train_files.iter().chain(lay.test_files).copied().collect();
            let mut members = HashMap::new();
            if path.is_file() {
                cifar::read_archive_members(path, &names, &mut members)?;
            } else {
                let dir = if path.join(lay.folder).is_dir() { path.join(lay.folder) } else { path.to_path_buf() };
                for name in names {
                    let f = dir.join(name);
                    if f.is_file() {
                        members.insert(name.to_string(), std::fs::read(&f).map_err(|e| Error::io(&f, e))?);
                    }
                }
            }
            verify_cifar(path, kind, members)
        }
        kind @ (DatasetKind::Mnist | DatasetKind::FashionMnist) => verify_idx(path, kind),
        DatasetKind::TinyImagenet => {
            let (tr, te) = folder::load_tiny_imagenet(path)?;
            verify_folder("tiny_imagenet", tr, te)
        }
        DatasetKind::ImageFolder => {
            let (tr, te) = folder::load_image_folder(path)?;
            verify_folder("image_folder", tr, te)
        }
        DatasetKind::Cub200 => {
            let (tr, te) = fine_grained::load_cub200(path)?;
            verify_folder("cub200", tr, te)
        }
        DatasetKind::Aircraft => {
            let (tr, te) = fine_grained::load_aircraft(path)?;
            verify_folder("aircraft", tr, te)
        }
        DatasetKind::Imagenet => {
            let (tr, te) = imagenet::load_imagenet(path)?;
            verify_folder("imagenet", tr, te)
        }
    }
}

fn verify_cifar(path: &Path, kind: DatasetKind, members: HashMap<String, Vec<u8>>) -> Result<VerifyReport> {
    let (train, test) = cifar::load(path, kind, false)?;
    let mut files: Vec<FileCheck> = members
        .iter()
        .map(|(name, bytes)| FileCheck {
            name: name.clone(),
            bytes: bytes.len(),
            md5: md5_hex(bytes),
            expected: known_md5(kind, name),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(VerifyReport {
        dataset: kind.name().into(),
        train_records: train.len(),
        test_records: test.len(),
        num_classes: train.info().num_classes,
        files,
    })
}

fn verify_idx(dir: &Path, kind: DatasetKind) -> Result<VerifyReport> {
    let mut files = Vec::new();
    for (name, _) in idx::FILES {
        let (_, bytes) = idx::read_idx_file(dir, name)?;
        files.push((name, md5_hex(&bytes), bytes.len()));
    }
    let (train, test) = idx::load(dir, kind, false)?;
    Ok(VerifyReport {
        dataset: kind.name().into(),
        train_records: train.len(),
        test_records: test.len(),
        num_classes: 10,
        files: files
            .into_iter()
            .map(|(n, md5, bytes)| FileCheck { name: n.into(), bytes, expected: known_md5(kind, n), md5 })
            .collect(),
    })
}

fn verify_folder(name: &str, train: folder::FolderDataset, test: folder::FolderDataset) -> Result<VerifyReport> {
    // Decoding every image is the only way to find unreadable files before a run trips on them.
    for ds in [&train, &test] {
        for i in 0..ds.len() {
            ds.load(i)?;
        }
    }
    Ok(VerifyReport {
        dataset: name.into(),
        train_records: train.len(),
        test_records: test.len(),
        num_classes: train.info().num_classes,
        files: Vec::new(),
    })
}
