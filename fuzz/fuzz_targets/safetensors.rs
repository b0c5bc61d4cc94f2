//! The safetensors reader every weights file goes through (`files::read_safetensors`: the
//! header validated before libtorch reads the file; `convert`, checkpoints, Mixer artifacts,
//! `model.init_from`). Never a panic, an abort in libtorch or an allocation the header merely
//! claims; the tensors of a file it accepts hold exactly the bytes their data_offsets span.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("safetensors").join("weights.safetensors");
    std::fs::write(&path, data).expect("write");
    let Ok(tensors) = samix::read_safetensors(&path, "weights") else { return };
    let header_len = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let bytes: u64 = tensors.iter().map(|(_, t)| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64).sum();
    assert!(bytes <= data.len() as u64 - 8 - header_len, "tensors hold more bytes than the file's data");
});
