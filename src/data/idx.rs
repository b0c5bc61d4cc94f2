//! MNIST and Fashion-MNIST in the IDX format, gzipped (as published) or raw.
use super::config::DatasetKind;
use super::dataset::{DatasetInfo, InMemoryDataset};
use crate::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

pub const FILES: [(&str, usize); 4] = [
    ("train-images-idx3-ubyte", 60_000),
    ("train-labels-idx1-ubyte", 60_000),
    ("t10k-images-idx3-ubyte", 10_000),
    ("t10k-labels-idx1-ubyte", 10_000),
];

const FASHION_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

pub fn load(dir: &Path, kind: DatasetKind, verify_checksums: bool) -> Result<(InMemoryDataset, InMemoryDataset)> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "not a folder (expected the four IDX files of MNIST / Fashion-MNIST)"));
    }
    let (name, mean, std, names): (&str, f32, f32, Vec<String>) = match kind {
        DatasetKind::FashionMnist => {
            ("fashion_mnist", 0.2860, 0.3530, FASHION_NAMES.iter().map(|s| s.to_string()).collect())
        }
        _ => ("mnist", 0.1307, 0.3081, (0..10).map(|d| d.to_string()).collect()),
    };
    let info = DatasetInfo {
        name: name.into(),
        num_classes: 10,
        channels: 1,
        mean: vec![mean],
        std: vec![std],
        class_names: names,
    };
    let split = |images: &str, labels: &str, n: usize| -> Result<InMemoryDataset> {
        let (ipath, ibytes) = read_idx_file(dir, images)?;
        let (lpath, lbytes) = read_idx_file(dir, labels)?;
        if verify_checksums {
            super::checksum::check_md5(kind, images, &ipath, &ibytes)?;
            super::checksum::check_md5(kind, labels, &lpath, &lbytes)?;
        }
        let (h, w, pixels) = parse_images(&ipath, &ibytes, n)?;
        let labels = parse_labels(&lpath, &lbytes, n)?;
        Ok(InMemoryDataset::new(info.clone(), h, w, pixels, labels))
    };
    Ok((split(FILES[0].0, FILES[1].0, FILES[0].1)?, split(FILES[2].0, FILES[3].0, FILES[2].1)?))
}

/// Finds `name` or `name.gz` in `dir` and returns its decompressed bytes.
pub fn read_idx_file(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let raw = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let (path, compressed) = if raw.is_file() {
        (raw, false)
    } else if gz.is_file() {
        (gz, true)
    } else {
        return Err(Error::data(dir, format!("missing `{name}` or `{name}.gz`")));
    };
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    if !compressed {
        return Ok((path, bytes));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| Error::data(&path, format!("corrupt gzip stream: {e}")))?;
    Ok((path, out))
}

fn header(path: &Path, bytes: &[u8], words: usize, magic: u32) -> Result<Vec<usize>> {
    if bytes.len() < 4 * words {
        return Err(Error::data(path, format!("file too short for an IDX header ({} bytes)", bytes.len())));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    if word(0) != magic {
        return Err(Error::data(path, format!("IDX magic {:#010x}, expected {magic:#010x}", word(0))));
    }
    Ok((1..words).map(|i| word(i) as usize).collect())
}

pub fn parse_images(path: &Path, bytes: &[u8], expected: usize) -> Result<(usize, usize, Vec<u8>)> {
    let dims = header(path, bytes, 4, IMAGES_MAGIC)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n != expected {
        return Err(Error::data(path, format!("header says {n} images, expected {expected}")));
    }
    let body = &bytes[16..];
    let size = n.checked_mul(h).and_then(|nh| nh.checked_mul(w));
    if size != Some(body.len()) {
        let want = size.map_or("an impossible number of".to_string(), |s| s.to_string());
        return Err(Error::data(
            path,
            format!("expected {want} pixel bytes after the header ({n}×{h}×{w}), found {} (truncated?)", body.len()),
        ));
    }
    Ok((h, w, body.to_vec()))
}

pub fn parse_labels(path: &Path, bytes: &[u8], expected: usize) -> Result<Vec<i64>> {
    let dims = header(path, bytes, 2, LABELS_MAGIC)?;
    if dims[0] != expected {
        return Err(Error::data(path, format!("header says {} labels, expected {expected}", dims[0])));
    }
    let body = &bytes[8..];
    if body.len() != expected {
        return Err(Error::data(path, format!("expected {expected} label bytes, found {} (truncated?)", body.len())));
    }
    body.iter()
        .enumerate()
        .map(|(i, &l)| {
            if l < 10 {
                Ok(l as i64)
            } else {
                Err(Error::data(path, format!("label {l} of record {i} out of range 0..10")))
            }
        })
        .collect()
}
