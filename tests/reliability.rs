//! What samix promises when runs go wrong (issue 12, first part): --force never deletes what
//! samix did not write; a resume never accepts a foreign checkpoint or a changed config; a
//! diverging run stops at the step, never checkpointing non-finite weights. Every test here failed
//! on main before these fixes (3cb2d06/b07af25).
mod common;
use common::tiny_fashion_config;
use common::training::Training;
use samix::config::TrainConfig;
use samix::train::{self, metrics};
use std::path::Path;
use tch::{Device, Tensor};

fn run(cfg: &TrainConfig, out: &Path, resume: bool, force: bool) -> samix::Result<metrics::Summary> {
    common::train_run(cfg, out, resume, force, None)
}

fn tiny(epochs: usize, extra: &[&str]) -> TrainConfig {
    let mut set: Vec<String> = vec!["train.batch_size=25".into()];
    set.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::parse(&tiny_fashion_config(100, 50, epochs, r#"policy = "none""#), &set).unwrap()
}

#[test]
fn force_deletes_only_samix_runs_and_only_what_samix_wrote() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny(1, &[]);
    // A project folder that merely has a config.toml, and a Lightning run folder.
    for (name, file) in [("project", "config.toml"), ("lightning", "checkpoints/last.ckpt"), ("logs", "metrics.jsonl")]
    {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
        std::fs::write(dir.join(file), "theirs").unwrap();
        std::fs::write(dir.join("thesis.tex"), "mine").unwrap();
        let err = run(&cfg, &dir, false, true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not a samix run"), "{name}: {err}");
        assert_eq!(std::fs::read_to_string(dir.join("thesis.tex")).unwrap(), "mine");
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), "theirs");
    }
    // A samix run with the user's own notes in it: --force replaces the run, keeps the notes.
    let out = tmp.path().join("run");
    run(&cfg, &out, false, false).unwrap();
    std::fs::write(out.join("notes.txt"), "keep me").unwrap();
    run(&cfg, &out, false, true).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "keep me");
    assert!(out.join("checkpoints/latest").exists());
}

#[test]
fn resume_refuses_a_changed_config_and_never_rewrites_the_runs_own() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&tiny(1, &[]), &out, false, false).unwrap();
    let before = std::fs::read(out.join("config.toml")).unwrap();
    let err = run(&tiny(1, &["optim.lr=0.01"]), &out, true, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("optim.lr"), "{err}");
    assert_eq!(std::fs::read(out.join("config.toml")).unwrap(), before, "the run's config is untouched");
    // The schedule's length may change: the run goes on to epoch 2.
    let s = run(&tiny(2, &[]), &out, true, false).unwrap();
    assert_eq!(s.epochs, 2);
}

/// Rewrites one tensor of a checkpoint's safetensors file, and forgets the checkpoint's recorded
/// checksums (as for a checkpoint written before they were recorded, or files brought over from
/// another run with sums of their own): the shape checks must hold on their own.
fn replace_tensor(path: &Path, name: &str, t: Tensor) {
    let mut all = Tensor::read_safetensors(path).unwrap();
    let slot = all.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}"));
    slot.1 = t;
    Tensor::write_safetensors(&all, path).unwrap();
    common::edit_state(&path.parent().unwrap().join("state.json"), |s| {
        s.as_object_mut().unwrap().remove("files");
    });
}

#[test]
fn resume_refuses_weights_and_optimizer_state_of_another_shape() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&tiny(1, &[]), &out, false, false).unwrap();
    let ckpt = out.join("checkpoints/epoch-0001");
    let saved = tmp.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors"] {
        std::fs::copy(ckpt.join(f), saved.join(f)).unwrap();
    }
    // [8,1,1,1] would broadcast into the [8,1,3,3] stem silently.
    replace_tensor(&ckpt.join("model.safetensors"), "conv1.weight", Tensor::ones([8, 1, 1, 1], tch::kind::FLOAT_CPU));
    let err = run(&tiny(2, &[]), &out, true, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("conv1.weight") && err.contains("[8, 1, 1, 1]"), "{err}");
    std::fs::copy(saved.join("model.safetensors"), ckpt.join("model.safetensors")).unwrap();
    // A momentum buffer of another shape (the fused kernel would read past its end).
    let opt = ckpt.join("optimizer.safetensors");
    replace_tensor(&opt, "momentum.conv1.weight", Tensor::ones([8, 1, 1, 1], tch::kind::FLOAT_CPU));
    let err = run(&tiny(2, &[]), &out, true, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("momentum.conv1.weight"), "{err}");
}

#[test]
fn divergence_stops_at_the_step_and_leaves_no_non_finite_checkpoint() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // One step per epoch at an absurd learning rate.
    let cfg = tiny(4, &["optim.lr=1e6", "data.train_limit=25"]);
    let err = run(&cfg, &out, false, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("diverged") && err.contains("step"), "{err}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap_or_default();
    assert!(!metrics.contains("null"), "no non-finite value in metrics.jsonl: {metrics}");
    // Four steps per epoch: the step whose loss first goes non-finite is named (the per-step
    // check on the device, before evaluation could notice).
    let many = tmp.path().join("many");
    let err = run(&tiny(2, &["optim.lr=1e6"]), &many, false, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("the loss is not finite") && err.contains("of 4"), "{err}");
    assert!(!many.join("checkpoints/latest").exists());
    if let Ok(latest) = std::fs::read_to_string(out.join("checkpoints/latest")) {
        let weights =
            Tensor::read_safetensors(out.join("checkpoints").join(latest.trim()).join("model.safetensors")).unwrap();
        for (name, t) in weights {
            assert!(bool::try_from(t.isfinite().all()).unwrap(), "checkpointed non-finite {name}");
        }
    }
}

/// A finished 1-epoch run of 2 (stopped after one), ready to resume.
fn stopped_run(out: &Path) {
    common::train_run(&tiny(2, &[]), out, false, false, Some(1)).unwrap();
}

#[test]
fn a_torn_last_metrics_line_does_not_block_resume() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    stopped_run(&out);
    let mut f = std::fs::OpenOptions::new().append(true).open(out.join("metrics.jsonl")).unwrap();
    std::io::Write::write_all(&mut f, b"{\"epoch\":2,\"train_lo").unwrap();
    drop(f);
    let s = run(&tiny(2, &[]), &out, true, false).unwrap();
    assert_eq!(s.epochs, 2);
    let m = metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2], "the torn line is repaired");
}

#[test]
fn resume_refuses_a_checkpoint_that_is_incomplete_corrupt_or_elsewhere() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    stopped_run(&out);
    let ckpt = out.join("checkpoints/epoch-0001");
    let keep = tmp.path().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors"] {
        std::fs::copy(ckpt.join(f), keep.join(f)).unwrap();
    }
    let resume_err = || run(&tiny(2, &[]), &out, true, false).err().map(|e| e.to_string()).unwrap_or_default();
    // No optimizer state although SGD has momentum: resuming would silently zero it.
    std::fs::remove_file(ckpt.join("optimizer.safetensors")).unwrap();
    let err = resume_err();
    assert!(err.contains("optimizer.safetensors"), "{err}");
    std::fs::copy(keep.join("optimizer.safetensors"), ckpt.join("optimizer.safetensors")).unwrap();
    // One flipped byte in the weights.
    let mut bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(ckpt.join("model.safetensors"), bytes).unwrap();
    let err = resume_err();
    assert!(err.contains("checksum") && err.contains("model.safetensors"), "{err}");
    std::fs::copy(keep.join("model.safetensors"), ckpt.join("model.safetensors")).unwrap();
    // `latest` naming a (valid) checkpoint outside the run folder.
    let outside = tmp.path().join("elsewhere/epoch-0001");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::process::Command::new("cp").arg("-r").arg(&ckpt).arg(&outside).status().unwrap();
    std::fs::write(out.join("checkpoints/latest"), "../../elsewhere/epoch-0001").unwrap();
    let err = resume_err();
    assert!(err.contains("latest"), "{err}");
    // Put right, the run resumes.
    std::fs::write(out.join("checkpoints/latest"), "epoch-0001").unwrap();
    assert_eq!(run(&tiny(2, &[]), &out, true, false).unwrap().epochs, 2);
}

#[test]
fn out_of_range_values_are_refused_before_anything_runs() {
    let none = tiny_fashion_config(100, 50, 1, r#"policy = "none""#);
    let cases: [(&[&str], &str); 4] = [
        // Beyond f32: the optimiser's device scalar cannot hold it (was a panic in sgd.rs).
        (&["optim.lr=1e308"], "optim.lr"),
        // A 200,032-pixel padded image (was an abort allocating 40 GB).
        (&["data.augment.crop_padding=100000"], "data.augment.crop_padding"),
        // Reflect padding of a 1-pixel image (was an endless loop).
        (
            &["data.augment.image_size=1", "data.augment.crop_padding=1", "data.augment.padding_mode=reflect"],
            "crop_padding",
        ),
        // No progress with 100,000 intra-op threads.
        (&["train.threads=100000"], "train.threads"),
    ];
    for (set, key) in cases {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let err = TrainConfig::parse(&none, &set).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(key), "{set:?}: {err}");
    }
    let samix = tiny_fashion_config(100, 50, 1, r#"policy = "samix""#);
    let err = TrainConfig::parse(&samix, &["mix.mixer_optim.lr=1e300".into()]).err().map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("mix.mixer_optim.lr"));
    // And reflect padding of a 1-pixel side terminates.
    let one = samix::data::RawImage::new(1, 1, 1, vec![7]);
    let padded = samix::data::transform::pad(&one, 1, samix::data::PaddingMode::Reflect);
    assert_eq!((padded.height, padded.width, padded.data), (3, 3, vec![7; 9]));
}

#[test]
fn a_consulted_classifier_of_another_dataset_is_refused() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    // A 1-channel Fashion-MNIST classifier scoring 3-channel CIFAR images (was a libtorch trace).
    run(&tiny(1, &[]), &tmp.path().join("teacher"), false, false).unwrap();
    let mix =
        samix::config::MixConfig::Attentivemix(samix::mix::AttentivemixConfig::new(2.0, tmp.path().join("teacher")));
    let dc = samix::data::DataConfig {
        train_limit: Some(1),
        test_limit: Some(1),
        ..samix::data::DataConfig::new(samix::data::DatasetKind::Cifar100, Some(common::cifar100_archive()))
    };
    let info = samix::data::open_splits(&dc).unwrap().train.info().clone();
    let err = train::Mixing::from_config(&mix, samix::samix::Scenario::Supervised, &info, Some(32), Device::Cpu)
        .err()
        .map(|e| e.to_string());
    let err = err.unwrap_or_default();
    assert!(err.contains("1-channel") && err.contains("has 3"), "{err}");
    // PuzzleMix's saliency with a classifier of fewer classes than the images' labels (found
    // regenerating docs/images: "Target 72 is out of bounds" and a libtorch trace, on f99336d).
    let half = tmp.path().join("half");
    run(&tiny(1, &["data.classes=[0, 5]"]), &half, false, false).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_samix"))
        .args(["mix", "--policy", "puzzlemix", "--n", "8", "--out"])
        .arg(tmp.path().join("g.png"))
        .arg("--data")
        .arg(common::fashion())
        .arg("--checkpoint")
        .arg(&half)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("predicts 5 classes") && err.lines().count() == 1, "{err}");
}

#[test]
fn resume_never_restarts_a_run_that_has_results() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&tiny(1, &[]), &out, false, false).unwrap();
    // A finished run whose checkpoints were deleted (to save disk) is not restarted from zero by
    // --resume, which would overwrite its metrics and summary.
    std::fs::remove_dir_all(out.join("checkpoints")).unwrap();
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let err = run(&tiny(1, &[]), &out, true, false).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no checkpoint"), "{err}");
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before);
    assert!(out.join("summary.json").exists());
}

#[test]
fn two_runs_on_one_directory_at_once_are_refused() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    run(&tiny(1, &[]), &out, false, false).unwrap();
    // A process training in the run holds its lock; another is refused at once, for a resume or
    // a --force replacement alike, and the run is left as it was.
    let held = samix::train::run_dir::lock(&out).unwrap();
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    for (resume, force) in [(true, false), (false, true)] {
        let err = run(&tiny(2, &[]), &out, resume, force).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("another samix process"), "{err}");
    }
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before);
    drop(held);
    assert_eq!(run(&tiny(2, &[]), &out, true, false).unwrap().epochs, 2, "free again once released");
}

/// The final weights and the metrics (without timing fields) of a finished run.
fn outcome(out: &Path, epochs: usize) -> (Vec<(String, Tensor)>, Vec<String>) {
    let mut w = Tensor::read_safetensors(out.join(format!("checkpoints/epoch-{epochs:04}/model.safetensors"))).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    let m = metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    let m = m
        .iter()
        .map(|e| format!("{} {} {} {} {} {:?}", e.epoch, e.train_loss, e.test_loss, e.test_acc1, e.lr, e.extra));
    (w, m.collect())
}

fn assert_same_outcome(a: &Path, b: &Path, epochs: usize) {
    let ((wa, ma), (wb, mb)) = (outcome(a, epochs), outcome(b, epochs));
    assert_eq!(ma, mb, "metrics differ after the interruption");
    assert_eq!(wa.len(), wb.len());
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after the interruption");
    }
}

/// A run stopped by a signal, continued with `--resume`, ends exactly as the uninterrupted run.
fn interrupted_run_resumes_exactly(mix: &str) {
    let tmp = tempfile::tempdir().unwrap();
    // 200 steps per epoch: the signal, sent when epoch 1 is reported, lands inside epoch 2.
    let text = tiny_fashion_config(1600, 100, 2, mix).replace("batch_size = 50", "batch_size = 8");
    let config = tmp.path().join("tiny.toml");
    std::fs::write(&config, text).unwrap();
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    let (code, err) = Training::start(&config, &whole, false).finish();
    assert_eq!(code, Some(0), "{err}");

    let t = Training::start(&config, &cut, false);
    t.wait_for("epoch   1/2");
    t.signal(libc::SIGINT);
    let (code, err) = t.finish();
    assert_eq!(code, Some(130), "Ctrl-C exits 130:\n{err}");
    assert!(err.contains("interrupted:") && err.contains("--resume"), "says how to continue:\n{err}");
    assert!(!cut.join("summary.json").exists());
    let (code, err) = Training::start(&config, &cut, true).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_same_outcome(&whole, &cut, 2);

    // SIGTERM at once, before any checkpoint, then a second signal: the process exits without
    // waiting (143), and the folder it leaves is one `--resume` continues to the same end.
    let early = tmp.path().join("early");
    let t = Training::start(&config, &early, false);
    t.wait_for("training on");
    t.signal(libc::SIGTERM);
    t.signal(libc::SIGTERM);
    let (code, err) = t.finish();
    assert_eq!(code, Some(143), "{err}");
    let (code, err) = Training::start(&config, &early, true).finish();
    assert_eq!(code, Some(0), "{err}");
    assert_same_outcome(&whole, &early, 2);
}

#[test]
fn an_interrupted_run_checkpoints_and_resumes_exactly() {
    interrupted_run_resumes_exactly("policy = \"mixup\"\nalpha = 1.0\nper_sample = true");
}

#[test]
fn an_interrupted_samix_run_checkpoints_and_resumes_exactly() {
    interrupted_run_resumes_exactly("policy = \"samix\"");
}
