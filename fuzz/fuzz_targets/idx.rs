//! The IDX (MNIST, Fashion-MNIST) image and label readers on arbitrary bytes: an error or a
//! consistent result, never a panic or an allocation the header asks for.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::data::idx::{parse_images, parse_labels};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `<mode byte><expected count: u16 LE><file bytes>`
    let [mode, lo, hi, file @ ..] = data else { return };
    let expected = u16::from_le_bytes([*lo, *hi]) as usize;
    let path = Path::new("fuzz-input");
    if mode % 2 == 0 {
        if let Ok((h, w, pixels)) = parse_images(path, file, expected) {
            assert_eq!(pixels.len(), expected * h * w);
        }
    } else if let Ok(labels) = parse_labels(path, file, expected) {
        assert_eq!(labels.len(), expected);
    }
});
