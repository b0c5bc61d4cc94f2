//! Shared test helpers: where the real datasets live, small tensors, and the `samix` binary in a
//! child process ([`training`]).
#![allow(dead_code)]
pub mod http;
pub mod training;
use std::path::PathBuf;

/// The folder of real datasets the tests read: `$SAMIX_TEST_DATA` (scripts/test.sh sets it to
/// the data directory it downloaded them into), else `../shared/datasets` beside the project root.
pub fn datasets() -> PathBuf {
    match std::env::var_os("SAMIX_TEST_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("shared").join("datasets"),
    }
}

/// `datasets()/name`; when it is missing, one line naming it and the test binary exits non-zero
/// (a missing dataset is a setup problem, not a test failure worth a backtrace).
fn dataset(name: &str) -> PathBuf {
    let p = datasets().join(name);
    if !p.exists() {
        // One thread reports and exits; parallel tests wait here instead of repeating the line.
        static REPORTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _only_one = REPORTING.lock();
        // Straight to the process's stderr: the harness captures `eprintln!` and would drop it.
        let line = format!("missing test dataset {} (run scripts/test.sh, which downloads it)\n", p.display());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        std::process::exit(2);
    }
    p
}

pub fn cifar100_archive() -> PathBuf {
    dataset("cifar-100-binary.tar.gz")
}

pub fn fashion() -> PathBuf {
    dataset("fashion-mnist")
}

pub fn mnist() -> PathBuf {
    dataset("mnist")
}

/// A training config for a tiny ResNet on a Fashion-MNIST slice.
pub fn tiny_fashion_config(train: usize, test: usize, epochs: usize, mix: &str) -> String {
    format!(
        r#"
seed = 7
[data]
dataset = "fashion_mnist"
path = "{path}"
train_limit = {train}
test_limit = {test}
workers = 2
[data.augment]
crop_padding = 2
padding_mode = "zeros"
hflip = true
[model]
arch = "resnet18"
base_width = 8
blocks = [1, 1, 1, 1]
[optim]
lr = 0.05
[mix]
{mix}
[train]
epochs = {epochs}
batch_size = 50
threads = 1
"#,
        path = fashion().display()
    )
}

/// A tiny MoCo v2 pre-training run on a Fashion-MNIST slice (narrow ResNet-18, small neck and
/// queue) with `[mix]` = `mix`, for `epochs` epochs.
pub fn tiny_pretrain_text(epochs: usize, mix: &str) -> String {
    format!(
        r#"
seed = 3
[data]
dataset = "fashion_mnist"
path = "{path}"
train_limit = 192
test_limit = 64
workers = 2
[data.augment]
image_size = 28
random_resized_crop = true
rrc_scale = [0.2, 1.0]
hflip = true
color_jitter = [0.4, 0.4, 0.0, 0.0]
[model]
arch = "resnet18"
base_width = 8
blocks = [1, 1, 1, 1]
[optim]
lr = 0.05
[ssl]
hidden_dim = 32
feature_dim = 16
queue_size = 96
knn_k = 20
[mix]
{mix}
[train]
epochs = {epochs}
batch_size = 32
median_of_last = 1
threads = 1
"#,
        path = fashion().display()
    )
}

/// libtorch's random generator (weight init) is process-global, and the tests of one file run on
/// parallel threads: tests that seed it, draw from it or train hold this lock so that a
/// concurrent test cannot shift their draws.
pub fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Online SAMix over two copies of the `model` network in samix's layout (`q.*`, `k.*`,
/// `mixer.*`), for `channels`-channel `side`-pixel images and `classes` classes.
pub fn online_samix(
    vs: &tch::nn::VarStore,
    model: &samix::model::ModelConfig,
    options: samix::samix::SamixOptions,
    channels: i64,
    classes: i64,
    side: i64,
) -> samix::samix::OnlineSamix<samix::model::Network> {
    let paths = samix::samix::SamixPaths::standard(vs);
    let online = samix::model::Network::new(&paths.online, model, channels, classes).expect("online network");
    let ema = samix::model::Network::new(&paths.ema, model, channels, classes).expect("EMA network");
    samix::samix::OnlineSamix::new(vs, &paths, online, ema, options, side).expect("online SAMix")
}

/// `samix::train::run` on the CPU without a progress bar.
pub fn train_run(
    cfg: &samix::config::TrainConfig,
    out: &std::path::Path,
    resume: bool,
    force: bool,
    stop_after: Option<usize>,
) -> samix::Result<samix::train::metrics::Summary> {
    samix::train::run(samix::train::RunOptions {
        config: cfg.clone(),
        out: out.to_path_buf(),
        resume,
        force,
        device: tch::Device::Cpu,
        progress: samix::train::Progress::Off,
        stop_after,
        stop: None,
        group: None,
    })
}

/// Edits a checkpoint's `state.json` as JSON and seals it again (as a deliberate edit through
/// `checkpoint::write_state` would), so that a test reaches the checks behind the seal.
pub fn edit_state(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut json);
    let state: samix::train::checkpoint::CheckpointState = serde_json::from_value(json).unwrap();
    samix::train::checkpoint::write_state(path, &state).unwrap();
}

/// Runs the `samix` binary with `args` in `cwd` and returns what it did.
pub fn samix_cli(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_samix")).args(args).current_dir(cwd).output().unwrap()
}

/// Runs the venv's python (`$VIRTUAL_ENV`; scripts/setup.sh makes it with torch, torchvision,
/// safetensors and tensorboard) with `args` and returns its stdout, after checking it succeeded.
pub fn venv_python<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<u8> {
    let venv = std::env::var_os("VIRTUAL_ENV").expect("VIRTUAL_ENV (source scripts/env.sh after scripts/setup.sh)");
    let o = std::process::Command::new(PathBuf::from(venv).join("bin/python")).args(args).output().unwrap();
    assert!(o.status.success(), "python oracle failed: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// The path of a PyTorch oracle script under tests/oracle.
pub fn oracle_script(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle").join(name)
}

/// A batch of `n` constant images (image k has value k + 1 everywhere) labelled 0..n.
pub fn indexed_batch(n: i64, h: i64, w: i64) -> (tch::Tensor, tch::Tensor) {
    use tch::{Device, Kind, Tensor};
    let vals = Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0;
    (vals.view([n, 1, 1, 1]).expand([n, 3, h, w], false).contiguous(), Tensor::arange(n, (Kind::Int64, Device::Cpu)))
}

/// A tensor's values as f64, flattened.
pub fn f64s(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}
