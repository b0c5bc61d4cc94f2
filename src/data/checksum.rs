//! Known checksums of the official dataset files, and the check every reader of them makes.
//! Touches nothing.
use super::config::DatasetKind;
use crate::{Error, Result};
use md5::{Digest, Md5};
use std::path::Path;

/// md5 of the *uncompressed* official files. CIFAR-100's are the values its authors publish;
/// MNIST's and Fashion-MNIST's were computed from copies equal to the official archives
/// (Fashion-MNIST's agree with the prefixes its authors list). CIFAR-10's per-file sums are not
/// known here, so only its sizes and labels are checked.
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
