//! The download's extract path: an arbitrary zip archive is extracted into its data folder or
//! refused; nothing is ever written outside that folder (no `../` or absolute entry escapes).
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::data::download::extract_zip;
use std::path::{Path, PathBuf};

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    // Deep enough that an entry climbing out (`../../../x`) still lands inside `root`, where
    // the check below sees it.
    let root = common::scratch("extract");
    let data_dir = root.join("a/b/c/d/e/data");
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).expect("data folder");
    let zip = root.join("archive.zip");
    std::fs::write(&zip, data).expect("write");
    let outside_before = tree(root);
    let _ = extract_zip(&zip, &data_dir, &data_dir.join("tiny-imagenet-200"));
    let outside_after: Vec<PathBuf> = tree(root).into_iter().filter(|p| !p.starts_with(&data_dir)).collect();
    let before: Vec<PathBuf> = outside_before.into_iter().filter(|p| !p.starts_with(&data_dir)).collect();
    assert_eq!(before, outside_after, "extraction wrote outside the data folder");
});
