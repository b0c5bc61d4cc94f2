//! Known checksums of official dataset files and `samix data verify`: recognises what a path holds,
//! validates it with the same loaders training uses, and compares md5 sums where they are known.
use super::config::DatasetKind;
use super::{cifar, folder, idx, Dataset};
use crate::{Error, Result};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::path::Path;

/// md5 of the *uncompressed* official files. CIFAR-100 from ../shared/datasets/README.md (the
/// official values); MNIST and Fashion-MNIST computed from the shared copies, whose README states
/// they equal the official ones (Fashion-MNIST prefixes match the README). CIFAR-10's per-file sums
/// are not known here, so only its sizes and labels are checked.
pub const KNOWN_MD5: &[(DatasetKind, &str, &str)] = &[
    (DatasetKind::Cifar100, "train.bin", "6172c7755cfe09b2fe270c85cebc1b15"),
    (DatasetKind::Cifar100, "test.bin", "4499cfba6c016c1be1438163640a0898"),
    (DatasetKind::Mnist, "train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    (DatasetKind::Mnist, "train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    (DatasetKind::Mnist, "t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    (DatasetKind::Mnist, "t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    (DatasetKind::FashionMnist, "train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    (DatasetKind::FashionMnist, "train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    (DatasetKind::FashionMnist, "t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    (DatasetKind::FashionMnist, "t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
];

pub fn known_md5(kind: DatasetKind, file: &str) -> Option<&'static str> {
    KNOWN_MD5.iter().find(|(k, f, _)| *k == kind && *f == file).map(|(_, _, m)| *m)
}

pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails with the file named when its md5 is known and differs.
pub fn check_md5(kind: DatasetKind, file: &str, shown_path: &Path, bytes: &[u8]) -> Result<()> {
    match known_md5(kind, file) {
        Some(expected) => {
            let got = md5_hex(bytes);
            if got == expected {
                Ok(())
            } else {
                Err(Error::data(
                    shown_path,
                    format!("md5 {got} differs from the official {expected} (corrupt or modified file; set data.verify_checksums = false to use it anyway)"),
                ))
            }
        }
        None => Ok(()),
    }
}

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
