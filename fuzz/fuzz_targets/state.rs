//! A checkpoint's `state.json` as `--resume` reads it: the folder opened by the checkpoint
//! loader (`checkpoint::open`, the `CheckpointState` parse), then every check a resume makes of
//! it before loading anything (`train::check_resumable`: seed, counters against the epoch's
//! steps, the interrupted epoch's sums and stream position). Never a panic; a state that passes
//! has counters the run can have made, survives its JSON round trip unchanged, and reads back
//! through `checkpoint::read_state` once sealed by `checkpoint::write_state`.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::train::{check_resumable, checkpoint};

fuzz_target!(|data: &[u8]| {
    // `<steps per epoch: u16 LE><seed: u8><state.json>`.
    let [a, b, seed, state @ ..] = data else { return };
    let (iters, seed) = (u16::from_le_bytes([*a, *b]) as usize, *seed as u64);
    let dir = common::scratch("state").join("epoch-0001");
    std::fs::create_dir_all(&dir).expect("checkpoint folder");
    let path = dir.join(checkpoint::STATE_FILE);
    std::fs::write(&path, state).expect("write");
    let Ok(ckpt) = checkpoint::open(&dir) else { return };
    let _ = checkpoint::folder_name(&ckpt.state);
    if let Some(p) = &ckpt.state.partial {
        for rank in 0..=p.rank_mix_stream_pos.len() + 1 {
            let _ = p.stream_pos_of(rank);
        }
    }
    if check_resumable(&ckpt.state, seed, iters, &path).is_err() {
        return;
    }
    let within = ckpt.state.partial.as_ref().map_or(0, |p| p.steps) as u64;
    assert!(within <= iters as u64, "a step beyond the epoch was accepted");
    assert_eq!(ckpt.state.global_step, ckpt.state.epoch as u64 * iters as u64 + within, "counters accepted");
    let text = serde_json::to_string(&ckpt.state).expect("serialise");
    let again: checkpoint::CheckpointState = serde_json::from_str(&text).expect("the written state reads back");
    assert_eq!(serde_json::to_string(&again).expect("serialise"), text, "the round trip changed the state");
    // A state written through the sealing writer reads back through the checking reader.
    let sealed = dir.join("sealed.json");
    checkpoint::write_state(&sealed, &ckpt.state).expect("write the sealed state");
    let back = checkpoint::read_state(&sealed).expect("a sealed state reads back");
    assert_eq!(back.content_sha256().ok(), ckpt.state.content_sha256().ok(), "the seal changed the content");
});
