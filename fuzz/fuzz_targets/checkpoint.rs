//! The checkpoint loader on an arbitrary `model.safetensors` (and `state.json`): the weights are
//! loaded only when every variable matches, otherwise an error and the variables untouched —
//! never a panic, an abort in libtorch, or a partial load.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use samix::train::checkpoint;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Two float variables and one integer buffer, as in a network's VarStore.
fn var_store() -> VarStore {
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let _ = (&root / "conv").zeros("weight", &[2, 1, 3, 3]);
    let _ = (&root / "fc").zeros("bias", &[3]);
    let _ = (&root / "bn").var_copy("num_batches_tracked", &Tensor::zeros([], (Kind::Int64, Device::Cpu)));
    vs
}

const STATE: &str = r#"{"epoch":1,"global_step":4,"seed":0,"samix_version":"fuzz"}"#;

fuzz_target!(|data: &[u8]| {
    // `<model length: u32 LE><model.safetensors><state.json>`; an empty state is a valid one.
    let [a, b, c, d, rest @ ..] = data else { return };
    let split = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(rest.len());
    let (model, state) = rest.split_at(split);
    let state = if state.is_empty() { STATE.as_bytes() } else { state };
    let dir = common::scratch("ckpt").join("epoch-0001");
    std::fs::create_dir_all(&dir).expect("checkpoint folder");
    std::fs::write(dir.join(checkpoint::MODEL_FILE), model).expect("write");
    std::fs::write(dir.join(checkpoint::STATE_FILE), state).expect("write");
    let Ok(ckpt) = checkpoint::open(&dir) else { return };
    let mut vs = var_store();
    let before: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    if ckpt.load_model(&mut vs).is_err() {
        for (name, t) in before {
            assert!(vs.variables()[&name].equal(&t), "`{name}` changed by a refused load");
        }
    }
    let _ = ckpt.optimizer_state();
});
