//! End-to-end training on real data slices: a tiny model learns; resume equals an
//! uninterrupted run; run directories are protected.
mod common;
use common::*;
use samix::config::TrainConfig;
use samix::train::metrics;
use std::path::Path;
use tch::Device;

fn run(
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    force: bool,
    stop_after: Option<usize>,
) -> samix::Result<metrics::Summary> {
    common::train_run(cfg, out, resume, force, stop_after)
}

fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut w = tch::Tensor::read_safetensors(path).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn tiny_model_learns_on_a_fashion_mnist_slice() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::parse(&tiny_fashion_config(6000, 1000, 3, r#"policy = "none""#), &[]).unwrap();
    let s = run(&cfg, &tmp.path().join("run"), false, false, None).unwrap();
    assert_eq!(s.epochs, 3);
    // Chance is 10%; a few hundred steps of a tiny ResNet get well past it.
    assert!(s.final_acc1 > 60.0, "test top-1 after 3 epochs: {}", s.final_acc1);
    let m = metrics::read_metrics(&tmp.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(m.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(m[2].train_loss < m[0].train_loss, "training loss falls");
    assert!(m.iter().all(|e| e.images_per_sec > 0.0 && e.loader_wait_s >= 0.0 && e.test_acc5 >= e.test_acc1));
    for f in ["config.toml", "seed", "summary.json", "checkpoints/latest", "checkpoints/epoch-0003/model.safetensors"] {
        assert!(tmp.path().join("run").join(f).exists(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["median_acc1"].as_f64().unwrap(),
        metrics::median_of_last(&m.iter().map(|e| e.test_acc1).collect::<Vec<_>>(), 10)
    );
}

#[test]
fn mixup_and_cutmix_runs_learn_too() {
    let _rng = common::torch_rng_lock();
    for mix in [
        r#"policy = "mixup"
alpha = 1.0"#,
        r#"policy = "cutmix"
alpha = 0.2"#,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::parse(&tiny_fashion_config(6000, 1000, 3, mix), &[]).unwrap();
        let s = run(&cfg, &tmp.path().join("run"), false, false, None).unwrap();
        assert!(s.final_acc1 > 45.0, "{mix}: {}", s.final_acc1);
    }
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    // MixUp with per-sample λ, augmentation and shuffling: every random stream is exercised.
    let text = tiny_fashion_config(600, 200, 3, "policy = \"mixup\"\nalpha = 1.0\nper_sample = true");
    let cfg = TrainConfig::parse(&text, &[]).unwrap();
    let (a, c) = (tmp.path().join("a"), tmp.path().join("c"));
    run(&cfg, &a, false, false, None).unwrap();
    // Interrupted after one epoch, then resumed in a second call.
    run(&cfg, &c, false, false, Some(1)).unwrap();
    assert!(c.join("checkpoints/epoch-0001").is_dir() && !c.join("checkpoints/epoch-0003").exists());
    assert_eq!(metrics::read_metrics(&c.join("metrics.jsonl")).unwrap().len(), 1);
    run(&cfg, &c, true, false, None).unwrap();
    let wa = weights(&a.join("checkpoints/epoch-0003/model.safetensors"));
    let wc = weights(&c.join("checkpoints/epoch-0003/model.safetensors"));
    assert_eq!(wa.len(), wc.len());
    for ((na, ta), (nc, tc)) in wa.iter().zip(&wc) {
        assert_eq!(na, nc);
        assert!(ta.equal(tc), "{na} differs after resume");
    }
    let (ma, mc) = (
        metrics::read_metrics(&a.join("metrics.jsonl")).unwrap(),
        metrics::read_metrics(&c.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!((ma.len(), mc.len()), (3, 3));
    for (x, y) in ma.iter().zip(&mc) {
        assert_eq!((x.epoch, x.train_loss, x.test_acc1, x.lr), (y.epoch, y.train_loss, y.test_acc1, y.lr));
    }
    // The lines themselves, but for the timings: byte for byte (the resume rewrote the first).
    let without_timings = |run: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for key in ["images_per_sec", "loader_wait_s", "epoch_time_s"] {
                    v.as_object_mut().unwrap().remove(key);
                }
                v.to_string()
            })
            .collect()
    };
    assert_eq!(without_timings(&a), without_timings(&c), "metrics.jsonl differs after the resume");
}

#[test]
fn run_directory_is_never_overwritten_without_force() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        TrainConfig::parse(&tiny_fashion_config(100, 50, 1, r#"policy = "none""#), &["train.batch_size=25".into()])
            .unwrap();
    let out = tmp.path().join("run");
    run(&cfg, &out, false, false, None).unwrap();
    let before = std::fs::read(out.join("metrics.jsonl")).unwrap();
    let err = run(&cfg, &out, false, false, None).unwrap_err().to_string();
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), before, "nothing touched");
    run(&cfg, &out, false, true, None).unwrap();
    // --force refuses to delete a folder that is not a run.
    let other = tmp.path().join("precious");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("thesis.tex"), "x").unwrap();
    let err = run(&cfg, &other, false, true, None).unwrap_err().to_string();
    assert!(err.contains("not a samix run"), "{err}");
    assert!(other.join("thesis.tex").exists());
    // --resume on a folder without checkpoints that is not a fresh run is refused.
    let err = run(&cfg, &other, true, false, None).unwrap_err().to_string();
    assert!(err.contains("no checkpoint"), "{err}");
    assert!(other.join("thesis.tex").exists() && !other.join(".samix-run").exists());
    // --resume where nothing exists yet starts the run (a requeued job may always pass it).
    assert_eq!(run(&cfg, &tmp.path().join("empty"), true, false, None).unwrap().epochs, 1);
}

#[test]
fn feature_level_policies_train() {
    let _rng = common::torch_rng_lock();
    for mix in ["policy = \"manifoldmix\"\nalpha = 2.0", "policy = \"alignmix\"\nalpha = 2.0"] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = TrainConfig::parse(&tiny_fashion_config(3000, 500, 2, mix), &[]).unwrap();
        let s = run(&cfg, &tmp.path().join("run"), false, false, None).unwrap();
        assert!(s.final_acc1 > 35.0, "{mix}: {}", s.final_acc1);
    }
    let err = TrainConfig::parse(
        &tiny_fashion_config(100, 50, 1, "policy = \"manifoldmix\"\nalpha = 2.0\npoints = [4]"),
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("mix.points"), "{err}");
}

#[test]
fn attentivemix_keeps_the_frozen_models_top_cells() {
    use samix::mix::MixPolicy;
    use samix::model::StagedNet;
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let teacher = TrainConfig::parse(&tiny_fashion_config(1000, 200, 1, r#"policy = "none""#), &[]).unwrap();
    run(&teacher, &tmp.path().join("teacher"), false, false, None).unwrap();
    let mix =
        format!("policy = \"attentivemix\"\nalpha = 2.0\ncheckpoint = \"{}\"", tmp.path().join("teacher").display());
    let cfg = TrainConfig::parse(&tiny_fashion_config(1000, 200, 1, &mix), &[]).unwrap();
    let policy = samix::train::input_policy(&cfg.mix, tch::Device::Cpu).unwrap();
    let splits = samix::data::open_splits(&cfg.data).unwrap();
    let loader = samix::train::eval_loader(&cfg, splits.test, Device::Cpu);
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let (_vs, net) = samix::train::Model::load_frozen(&tmp.path().join("teacher"), Device::Cpu).unwrap();
    for seed in 0..5u64 {
        let out = policy.mix(
            &batch.images,
            &batch.labels,
            &mut <samix::rng::SamixRng as rand::SeedableRng>::seed_from_u64(seed),
        );
        let first = out.first_weight.unwrap();
        let lam = Vec::<f64>::try_from(&out.targets.lam.to_kind(tch::Kind::Double)).unwrap();
        let area = Vec::<f64>::try_from(&first.mean_dim(&[1i64, 2, 3][..], false, tch::Kind::Double)).unwrap();
        assert_eq!(lam.len(), area.len());
        assert!(lam.iter().zip(&area).all(|(l, a)| (l - a).abs() < 1e-6), "per-sample λ = kept area");
        // The kept cells are the highest-scoring ones of the frozen network (4×4 grid, 7×7 px cells).
        let f = tch::no_grad(|| net.features(&batch.images, false, &[]).0);
        let scores = f.mean_dim(1, false, tch::Kind::Float).view([-1, 16]);
        let cells = first.view([-1, 1, 4, 7, 4, 7]).select(3, 0).select(4, 0).reshape([-1, 16]);
        for n in 0..lam.len() as i64 {
            let k = cells.get(n).sum(tch::Kind::Int64).int64_value(&[]);
            assert!((1..=16).contains(&k));
            let kept_min = scores.get(n).masked_select(&cells.get(n).gt(0.5)).min().double_value(&[]);
            let dropped = scores.get(n).masked_select(&cells.get(n).lt(0.5));
            if dropped.numel() > 0 {
                assert!(
                    kept_min >= dropped.max().double_value(&[]),
                    "sample {n}: a kept cell scores below a dropped one"
                );
            }
        }
    }
    let bad = TrainConfig::parse(
        &tiny_fashion_config(100, 50, 1, "policy = \"attentivemix\"\nalpha = 2.0\ncheckpoint = \"/nowhere\""),
        &[],
    )
    .unwrap();
    assert!(samix::train::input_policy(&bad.mix, tch::Device::Cpu).unwrap_err().to_string().contains("/nowhere"));
    // `scorer_train_bn`: the reference's train-mode scorer; its kept cells are the best by the
    // batch's own statistics, which after training differ from the running ones.
    let train_bn =
        TrainConfig::parse(&tiny_fashion_config(1000, 200, 1, &format!("{mix}\nscorer_train_bn = true")), &[]).unwrap();
    let policy_train = samix::train::input_policy(&train_bn.mix, tch::Device::Cpu).unwrap();
    let draw = |p: &dyn MixPolicy| {
        p.mix(&batch.images, &batch.labels, &mut <samix::rng::SamixRng as rand::SeedableRng>::seed_from_u64(7))
            .first_weight
            .unwrap()
    };
    let first = draw(&policy_train);
    assert!(!first.equal(&draw(&policy)), "train-mode statistics pick other cells somewhere");
    let f = tch::no_grad(|| net.features(&batch.images, true, &[]).0);
    let scores = f.mean_dim(1, false, tch::Kind::Float).view([-1, 16]);
    let cells = first.view([-1, 1, 4, 7, 4, 7]).select(3, 0).select(4, 0).reshape([-1, 16]);
    let kept_min = scores.where_self(&cells.gt(0.5), &scores.full_like(f64::INFINITY)).amin(1, false);
    let dropped_max = scores.where_self(&cells.lt(0.5), &scores.full_like(f64::NEG_INFINITY)).amax(1, false);
    assert!(bool::try_from(kept_min.ge_tensor(&dropped_max).all()).unwrap(), "kept cells are the train-mode best");
}

#[test]
fn puzzlemix_trains() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let cfg =
        TrainConfig::parse(&tiny_fashion_config(3000, 500, 2, "policy = \"puzzlemix\"\nalpha = 1.0"), &[]).unwrap();
    let s = run(&cfg, &tmp.path().join("run"), false, false, None).unwrap();
    assert!(s.final_acc1 > 35.0, "puzzlemix: {}", s.final_acc1);
}

/// A checkpoint's `state.json` whose counters this run cannot have made is refused on resume,
/// naming it (issue 24, R11: `epoch = 100`, `global_step = u64::MAX` were accepted).
#[test]
fn resume_refuses_counters_the_run_cannot_have_made() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::parse(&tiny_fashion_config(200, 100, 2, "policy = \"none\""), &[]).unwrap();
    let out = tmp.path().join("run");
    run(&cfg, &out, false, false, Some(1)).unwrap();
    let state_path = out.join("checkpoints/epoch-0001/state.json");
    let good = std::fs::read_to_string(&state_path).unwrap();
    for (key, value) in [
        ("epoch", serde_json::json!(100)),
        ("global_step", serde_json::json!(u64::MAX)),
        ("global_step", serde_json::json!(3)),
    ] {
        std::fs::write(&state_path, &good).unwrap();
        common::edit_state(&state_path, |s| s[key] = value.clone());
        let err = run(&cfg, &out, true, false, None).unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("cannot give"), "{key} = {value}: {err}");
    }
    std::fs::write(&state_path, good).unwrap();
    run(&cfg, &out, true, false, None).unwrap();
}
