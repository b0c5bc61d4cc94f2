//! CIFAR-10 and CIFAR-100, binary version: the official `.tar.gz` as downloaded, or its extracted
//! folder. Each record is the label byte(s) followed by 3072 pixel bytes (R, G, B planes of 32×32).
use super::config::DatasetKind;
use super::dataset::{DatasetInfo, InMemoryDataset};
use crate::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const CIFAR_STD: [f32; 3] = [0.2023, 0.1994, 0.2010];

/// Layout facts of one CIFAR variant.
pub struct CifarLayout {
    pub folder: &'static str,
    pub train_files: &'static [&'static str],
    pub test_files: &'static [&'static str],
    pub names_file: &'static str,
    /// Label bytes before the pixels (CIFAR-100 stores coarse, then fine).
    pub label_bytes: usize,
    pub num_classes: usize,
    pub records_per_train_file: usize,
    pub test_records: usize,
}

pub const CIFAR10: CifarLayout = CifarLayout {
    folder: "cifar-10-batches-bin",
    train_files: &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    test_files: &["test_batch.bin"],
    names_file: "batches.meta.txt",
    label_bytes: 1,
    num_classes: 10,
    records_per_train_file: 10_000,
    test_records: 10_000,
};

pub const CIFAR100: CifarLayout = CifarLayout {
    folder: "cifar-100-binary",
    train_files: &["train.bin"],
    test_files: &["test.bin"],
    names_file: "fine_label_names.txt",
    label_bytes: 2,
    num_classes: 100,
    records_per_train_file: 50_000,
    test_records: 10_000,
};

pub fn layout(kind: DatasetKind) -> &'static CifarLayout {
    match kind {
        DatasetKind::Cifar10 => &CIFAR10,
        _ => &CIFAR100,
    }
}

/// Loads the train and test splits from an archive or a folder, checking sizes and labels.
pub fn load(path: &Path, kind: DatasetKind, verify_checksums: bool) -> Result<(InMemoryDataset, InMemoryDataset)> {
    let lay = layout(kind);
    let mut files = read_cifar_files(path, lay)?;
    if verify_checksums {
        for (name, bytes) in &files {
            super::checksum::check_md5(kind, name, &path.join(name), bytes)?;
        }
    }
    // The class-name list is informational (nothing is computed from it): an archive without it
    // still loads, with a warning.
    let names = match files.remove(lay.names_file) {
        Some(b) => {
            String::from_utf8_lossy(&b).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
        }
        None => {
            tracing::warn!("{}: no {}; class names unknown", path.display(), lay.names_file);
            Vec::new()
        }
    };
    let info = DatasetInfo {
        name: if lay.num_classes == 10 { "cifar10".into() } else { "cifar100".into() },
        num_classes: lay.num_classes,
        channels: 3,
        mean: CIFAR_MEAN.to_vec(),
        std: CIFAR_STD.to_vec(),
        class_names: names,
    };
    let mut split = |names: &[&str], per_file: usize| -> Result<InMemoryDataset> {
        let mut pixels = Vec::with_capacity(names.len() * per_file * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(names.len() * per_file);
        for name in names {
            let bytes = files.remove(*name).ok_or_else(|| Error::data(path.join(name), "missing from the dataset"))?;
            decode_records(&path.join(name), &bytes, lay, per_file, &mut pixels, &mut labels)?;
        }
        Ok(InMemoryDataset::new(info.clone(), 32, 32, pixels, labels))
    };
    let train = split(lay.train_files, lay.records_per_train_file)?;
    let test = split(lay.test_files, lay.test_records)?;
    Ok((train, test))
}

/// Checks one record file and appends its images and (fine) labels.
pub fn decode_records(
    path: &Path,
    bytes: &[u8],
    lay: &CifarLayout,
    expected_records: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<i64>,
) -> Result<()> {
    let record = lay.label_bytes + IMAGE_BYTES;
    if bytes.len() != expected_records * record {
        return Err(Error::data(
            path,
            format!(
                "expected {} bytes ({} records of {} bytes), found {} (truncated or not a CIFAR-{} binary file)",
                expected_records * record,
                expected_records,
                record,
                bytes.len(),
                lay.num_classes
            ),
        ));
    }
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[lay.label_bytes - 1] as usize;
        if label >= lay.num_classes {
            return Err(Error::data(path, format!("record {i}: label {label} out of range 0..{}", lay.num_classes)));
        }
        labels.push(label as i64);
        pixels.extend_from_slice(&rec[lay.label_bytes..]);
    }
    Ok(())
}

/// Returns the contents of every CIFAR file by base name, from an archive or a folder.
fn read_cifar_files(path: &Path, lay: &CifarLayout) -> Result<HashMap<String, Vec<u8>>> {
    let wanted: Vec<&str> = lay.train_files.iter().chain(lay.test_files).copied().chain([lay.names_file]).collect();
    let mut found = HashMap::new();
    if path.is_file() {
        read_archive_members(path, &wanted, &mut found)?;
    } else if path.is_dir() {
        let dir = find_record_dir(path, lay);
        for name in &wanted {
            let file = dir.join(name);
            if file.is_file() {
                found.insert(name.to_string(), std::fs::read(&file).map_err(|e| Error::io(&file, e))?);
            }
        }
    } else {
        return Err(Error::data(
            path,
            "no such file or folder (expected a CIFAR binary .tar.gz or its extracted folder)",
        ));
    }
    for name in lay.train_files.iter().chain(lay.test_files) {
        if !found.contains_key(*name) {
            return Err(Error::data(
                path,
                format!(
                    "missing `{name}` (expected the CIFAR-{} binary layout `{}/{name}`)",
                    lay.num_classes, lay.folder
                ),
            ));
        }
    }
    Ok(found)
}

/// The folder that holds the record files: `path` itself or `path/<official folder name>`.
fn find_record_dir(path: &Path, lay: &CifarLayout) -> PathBuf {
    let nested = path.join(lay.folder);
    if nested.join(lay.test_files[0]).is_file() {
        nested
    } else {
        path.to_path_buf()
    }
}

/// The largest record file a CIFAR archive holds, with room (CIFAR-100 `train.bin`: 153.7 MB).
const MAX_MEMBER_BYTES: u64 = 200 << 20;

/// Streams a (gzipped) tar archive and keeps the members whose base name is wanted.
pub fn read_archive_members(path: &Path, wanted: &[&str], found: &mut HashMap<String, Vec<u8>>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader: Box<dyn Read> =
        if is_gzip(path)? { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    let mut archive = tar::Archive::new(reader);
    let bad = |e: std::io::Error| Error::data(path, format!("cannot read archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name.filter(|n| wanted.contains(&n.as_str())) {
            // The header's size is not trusted for the allocation: a member is read up to the
            // largest real one (CIFAR-100 train.bin, 153.7 MB) and refused beyond it.
            if entry.size() > MAX_MEMBER_BYTES {
                return Err(Error::data(
                    path,
                    format!("member `{name}` claims {} bytes, more than any CIFAR file", entry.size()),
                ));
            }
            let mut buf = Vec::with_capacity(entry.size() as usize);
            (&mut entry).take(MAX_MEMBER_BYTES + 1).read_to_end(&mut buf).map_err(bad)?;
            found.insert(name, buf);
        }
    }
    Ok(())
}

pub fn is_gzip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}
