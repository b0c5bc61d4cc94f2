//! Self-supervised pre-training runs (issue 13) on a real slice: exact resume with the key queue,
//! the CLI's pretrain → linear-evaluation path, and the settings pre-training refuses.
mod common;
use common::*;
use samix::config::TrainConfig;
use samix::ssl::SslConfig;
use tch::Tensor;

fn tiny_pretrain_config(epochs: usize, mix: &str) -> TrainConfig {
    TrainConfig::parse(&tiny_pretrain_text(epochs, mix), &[]).unwrap()
}

fn checkpoint_tensors(run: &std::path::Path) -> std::collections::BTreeMap<String, Tensor> {
    let ckpt = samix::train::checkpoint::latest(run).unwrap().unwrap();
    Tensor::read_safetensors(ckpt.dir.join(samix::train::checkpoint::MODEL_FILE)).unwrap().into_iter().collect()
}

/// Two epochs at once, and one epoch then a resumed second: the same weights, Mixer, key side and
/// queue, bit for bit.
#[test]
fn pretraining_resumes_exactly_with_its_queue() {
    let _lock = torch_rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_pretrain_config(2, "policy = \"samix\"\nlam_margin = 0.0");
    let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
    train_run(&cfg, &a, false, false, None).unwrap();
    train_run(&cfg, &b, false, false, Some(1)).unwrap();
    train_run(&cfg, &b, true, false, None).unwrap();
    let (ta, tb) = (checkpoint_tensors(&a), checkpoint_tensors(&b));
    assert!(ta.contains_key("moco.queue") && ta.contains_key("mixer.query.weight"));
    for (name, t) in &ta {
        assert!(t.equal(&tb[name]), "{name} differs after resuming");
    }
    // The metrics too: loss terms and k-NN accuracies of both epochs (timings aside).
    let losses = |run: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::json!([v["train_loss"], v["test_acc1"], v["test_loss"], v["extra"]])
            })
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 2);
    for key in samix::samix::mask::AREA_TERMS {
        assert!(
            losses(&a)[1][3][key].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)),
            "{key} missing or out of range"
        );
    }
    assert!(b.join("backbone.safetensors").is_file());
    let backbone: Vec<String> =
        Tensor::read_safetensors(b.join("backbone.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(
        backbone.iter().any(|n| n == "conv1.weight") && !backbone.iter().any(|n| n.starts_with("neck.")),
        "{backbone:?}"
    );
    assert_eq!(ta["moco.queue"].size(), [16, 96]);
    // The run leaves its key encoder and Mixer for SAMix-P: they load, hold the run's own key
    // encoder, and mix a batch with masks of the images' size.
    let pretrained = samix::samix::PretrainedMixer::load(&b, tch::Device::Cpu).unwrap();
    let loaded: std::collections::BTreeMap<String, Tensor> = pretrained.var_store().variables().into_iter().collect();
    for name in ["k.conv1.weight", "mixer.query.weight"] {
        assert!(loaded[name].equal(&tb[name]), "{name} is not the run's");
    }
    let policy = samix::samix::SamixP::new(pretrained, 2.0, 0.0, 0.0).unwrap();
    let x = Tensor::rand([4, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
    let mixed = samix::mix::MixPolicy::mix(
        &policy,
        &x,
        &Tensor::arange(4, (tch::Kind::Int64, tch::Device::Cpu)),
        &mut <samix::rng::SamixRng as rand::SeedableRng>::seed_from_u64(0),
    );
    assert_eq!(mixed.first_weight.unwrap().size(), [4, 1, 28, 28]);
}

/// `samix pretrain` then `samix linear` on the pre-trained backbone: the linear run trains the
/// classifier only (the backbone's weights and statistics stay those of the file), and both
/// commands refuse configs of the other kind and a missing backbone, naming what is wrong.
#[test]
fn pretrain_then_linear_evaluation_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pre.toml"), tiny_pretrain_text(1, "policy = \"mixup\"\nalpha = 2.0")).unwrap();
    let linear = tiny_fashion_config(192, 64, 1, "policy = \"none\"");
    std::fs::write(d.join("linear.toml"), &linear).unwrap();
    let ok = |o: std::process::Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(samix_cli(&["--quiet", "pretrain", "--config", "pre.toml", "--out", "pre"], d));
    let metrics = std::fs::read_to_string(d.join("pre/metrics.jsonl")).unwrap();
    assert!(metrics.contains("knn_acc1") && metrics.contains("loss_mix"), "{metrics}");
    // Two epochs, stopped after the first: the classifier moves between the two checkpoints,
    // the backbone (weights and BN statistics) is the pre-trained one in both.
    let linear_args = ["--quiet", "linear", "--backbone", "pre", "--config", "linear.toml", "--out", "lin"];
    ok(samix_cli(&[&linear_args[..], &["--set", "train.epochs=2", "--stop-after", "1"]].concat(), d));
    let first = checkpoint_tensors(&d.join("lin"));
    ok(samix_cli(&[&linear_args[..], &["--set", "train.epochs=2", "--resume"]].concat(), d));
    let summary = std::fs::read_to_string(d.join("lin/summary.json")).unwrap();
    assert!(summary.contains("median"), "{summary}");
    let backbone: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(d.join("pre/backbone.safetensors")).unwrap().into_iter().collect();
    let trained = checkpoint_tensors(&d.join("lin"));
    for (name, t) in &trained {
        if name.starts_with("fc.") {
            assert!(!t.equal(&first[name]), "{name}: the classifier trains");
        } else {
            assert!(t.equal(&backbone[name]), "{name}: the frozen backbone (and its BN statistics) must not change");
            assert!(first[name].equal(&backbone[name]), "{name}: frozen from the first epoch on");
        }
    }
    let config = std::fs::read_to_string(d.join("lin/config.toml")).unwrap();
    assert!(config.contains("linear_probe = true") && config.contains("backbone.safetensors"), "{config}");

    let refused = |args: &[&str], says: &str| {
        let o = samix_cli(args, d);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success() && err.contains(says), "{args:?}: {err}");
    };
    refused(&["pretrain", "--config", "linear.toml", "--out", "x"], "[ssl]");
    refused(&["eval", "--checkpoint", "pre"], "samix linear");
    refused(&["linear", "--backbone", "pre", "--config", "pre.toml", "--out", "y"], "[ssl]");
    refused(&["linear", "--backbone", "missing", "--config", "linear.toml", "--out", "z"], "missing");
    std::fs::write(
        d.join("bad.toml"),
        tiny_pretrain_text(1, "policy = \"resizemix\"\nalpha = 1.0").replace("[ssl]", "[ssl]\ncross_view = true"),
    )
    .unwrap();
    refused(&["pretrain", "--config", "bad.toml", "--out", "w"], "ssl.cross_view");
}

/// Settings pre-training would not use are refused, naming the key; the default queue is a
/// multiple of the batch whatever the batch.
#[test]
fn unused_settings_are_refused_and_the_default_queue_fits_the_batch() {
    let text = tiny_pretrain_text(1, "policy = \"samix\"");
    for (set, key) in [
        ("train.label_smoothing=0.1", "train.label_smoothing"),
        ("train.channels_last=true", "train.channels_last"),
        ("mix.mixer_loss.kind=\"soft_ce\"", "mix.mixer_loss"),
        ("ssl.mixer_loss=\"local\"", "mix.mixer_loss.kind"),
        ("ssl.eta=0.5", "mix.mixer_loss.eta"),
        ("ssl.mask_adjust=\"auto\"", "mix.mask_adjust"),
        ("ssl.mean_margin=0.2", "mix.mean_margin"),
        ("mix.ema.momentum=0.99", "mix.ema"),
        ("ssl.cross_view=true", "ssl.cross_view"),
        ("ssl.queue_size=100", "ssl.queue_size"),
        ("train.linear_probe=true", "train.linear_probe"),
    ] {
        let err = TrainConfig::parse(&text, &[set.to_string()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(key), "--set {set}: {err:?}");
    }
    let ssl = SslConfig::default();
    assert_eq!(ssl.queue_len(100, 100_000), 65_500, "Tiny-ImageNet at batch 100");
    assert_eq!(ssl.queue_len(256, 50_000), 49_920, "CIFAR at batch 256: below the training set");
    assert_eq!(ssl.queue_len(384, 1_000_000), 65_280);
    assert_eq!(ssl.queue_len(8, 5), 8, "at least one batch");
}
