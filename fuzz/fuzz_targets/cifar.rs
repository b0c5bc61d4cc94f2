//! The CIFAR readers: the record decoder on arbitrary bytes, and the (gzipped) tar reader on an
//! arbitrary archive file. Errors, never panics or unbounded allocations.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::data::cifar::{decode_records, layout, read_archive_members};
use samix::data::DatasetKind;
use std::collections::HashMap;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    // `<mode byte><records byte><bytes>`
    let [mode, records, bytes @ ..] = data else { return };
    let kind = if mode & 1 == 0 { DatasetKind::Cifar10 } else { DatasetKind::Cifar100 };
    if mode & 2 == 0 {
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        let lay = layout(kind);
        if decode_records(&PathBuf::from("fuzz-input"), bytes, lay, *records as usize, &mut pixels, &mut labels).is_ok()
        {
            assert_eq!(labels.len(), *records as usize);
            assert!(labels.iter().all(|&l| (0..lay.num_classes as i64).contains(&l)));
        }
    } else {
        let path = common::scratch("cifar").join("archive.tar.gz");
        std::fs::write(&path, bytes).expect("scratch write");
        let lay = layout(kind);
        let wanted: Vec<&str> = lay.train_files.iter().chain(lay.test_files).copied().collect();
        let _ = read_archive_members(&path, &wanted, &mut HashMap::new());
    }
});
