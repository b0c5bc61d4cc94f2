//! The `samix` binary: bad input gives one clear error and a non-zero exit (never a panic);
//! `data verify`, `train` and `eval` work end to end.
mod common;
use common::*;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

#[test]
fn bad_configs_and_arguments_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_fashion_config(100, 50, 1, r#"policy = "none""#);
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let cases: Vec<(String, Vec<String>, Vec<&str>)> = vec![
        (
            write("unknown_key.toml", &good.replace("lr = 0.05", "lr = 0.05\nlearning_rate = 1")),
            vec![],
            vec!["unknown_key.toml", "optim", "learning_rate"],
        ),
        (
            write("unknown_policy.toml", &good.replace(r#"policy = "none""#, r#"policy = "supermix""#)),
            vec![],
            vec!["mix", "supermix"],
        ),
        (write("bad_range.toml", &good), vec!["--set".into(), "optim.lr=-1".into()], vec!["optim.lr"]),
        (
            write("bad_alpha.toml", &good.replace(r#"policy = "none""#, "policy = \"mixup\"\nalpha = 0")),
            vec![],
            vec!["mix.alpha"],
        ),
        (write("bad_type.toml", &good), vec!["--set".into(), "train.epochs=many".into()], vec!["train.epochs"]),
        (write("syntax.toml", "seed = [1,"), vec![], vec!["syntax.toml"]),
        (write("bad_set.toml", &good), vec!["--set".into(), "noequals".into()], vec!["--set", "noequals"]),
        (write("missing_data.toml", &good.replace("fashion-mnist", "no-such-folder")), vec![], vec!["no-such-folder"]),
    ];
    for (cfg, extra, needles) in cases {
        let out = tmp.path().join("run").to_string_lossy().into_owned();
        let mut args = vec!["train", "--config", &cfg, "--out", &out, "--device", "cpu"];
        args.extend(extra.iter().map(String::as_str));
        let o = samix_cli(&args, tmp.path());
        assert_clean_failure(&o, &needles);
        assert!(!tmp.path().join("run").join("checkpoints").exists(), "{cfg}: nothing half-written");
    }
    let o = samix_cli(&["train", "--config", "nope.toml"], tmp.path());
    assert_clean_failure(&o, &["nope.toml"]);
    let cfg = write("ok.toml", &good);
    let o = samix_cli(&["train", "--config", &cfg, "--device", "tpu"], tmp.path());
    assert_clean_failure(&o, &["device `tpu`"]);
    // Bad bench options, and a bad precision in a config.
    for (args, needles) in [
        (vec!["bench", "--device", "cpu", "--precision", "f16"], vec!["--precision", "f16"]),
        (vec!["bench", "--device", "cpu", "--methods", "vanilla,supermix"], vec!["supermix"]),
        (vec!["bench", "--device", "cpu", "--cuda-graph", "--methods", "vanilla"], vec!["--cuda-graph", "CUDA"]),
    ] {
        assert_clean_failure(&samix_cli(&args, tmp.path()), &needles);
    }
    let cfg = write("bad_precision.toml", &good.replace("threads = 1", "threads = 1\nprecision = \"fp8\""));
    assert_clean_failure(
        &samix_cli(&["train", "--config", &cfg, "--device", "cpu"], tmp.path()),
        &["precision", "fp8"],
    );
}

#[test]
fn truncated_dataset_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(cifar100_archive()).unwrap();
    let cut = tmp.path().join("cifar-100-binary.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = samix_cli(&["data", "verify", cut.to_str().unwrap()], tmp.path());
    assert_clean_failure(&o, &["cifar-100-binary.tar.gz"]);
    let cfg = format!(
        "[data]\ndataset = \"cifar100\"\npath = \"{}\"\n[model]\narch = \"resnet18\"\n[train]\nepochs = 1\n",
        cut.display()
    );
    std::fs::write(tmp.path().join("c.toml"), cfg).unwrap();
    let o = samix_cli(&["train", "--config", "c.toml", "--out", "r", "--device", "cpu"], tmp.path());
    assert_clean_failure(&o, &["cifar-100-binary.tar.gz"]);
}

#[test]
fn data_verify_reports_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let o = samix_cli(&["data", "verify", cifar100_archive().to_str().unwrap()], tmp.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("cifar100") && out.contains("50000 train") && out.matches("md5 ok").count() == 2, "{out}");
    let o = samix_cli(&["data", "verify", fashion().to_str().unwrap()], tmp.path());
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).matches("md5 ok").count() == 4);
    // A modified copy: structure fine, checksum off, exit non-zero.
    let dir = tmp.path().join("fm");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(fashion()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let (_, mut labels) = samix::data::idx::read_idx_file(&dir, "t10k-labels-idx1-ubyte").unwrap();
    labels[100] = (labels[100] + 1) % 10;
    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    let o = samix_cli(&["data", "verify", dir.to_str().unwrap()], tmp.path());
    assert_clean_failure(&o, &["do not match"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("fashion_mnist") && out.matches("MISMATCH").count() == 1,
        "still recognised, one file flagged: {out}"
    );
}

#[test]
fn train_then_eval_reproduces_the_final_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("t.toml"),
        tiny_fashion_config(
            1000,
            300,
            1,
            r#"policy = "cutmix"
alpha = 0.2"#,
        ),
    )
    .unwrap();
    let o = samix_cli(&["train", "--config", "t.toml", "--out", "run", "--device", "cpu"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("run/summary.json")).unwrap()).unwrap();
    let acc = summary["final_acc1"].as_f64().unwrap();
    let o = samix_cli(&["eval", "--checkpoint", "run", "--device", "cpu"], tmp.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // The config's test_limit (300) applies: same images, same weights, same accuracy.
    assert!(out.contains(&format!("top-1 {acc:.2}%")) && out.contains("300 images"), "{out} vs {acc}");
    // A second train into the same folder is refused; --resume of a finished run is a no-op.
    let o = samix_cli(&["train", "--config", "t.toml", "--out", "run", "--device", "cpu"], tmp.path());
    assert_clean_failure(&o, &["--force"]);
    let o = samix_cli(&["eval", "--checkpoint", "nowhere", "--device", "cpu"], tmp.path());
    assert_clean_failure(&o, &["nowhere"]);
}

/// The final checkpoint's weights and the metrics lines (without timings) of a finished run.
fn final_state(run: &std::path::Path, epochs: usize) -> (Vec<(String, tch::Tensor)>, Vec<String>) {
    let model = run.join(format!("checkpoints/epoch-{epochs:04}/model.safetensors"));
    let mut weights = tch::Tensor::read_safetensors(model).unwrap();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let metrics = samix::train::metrics::read_metrics(&run.join("metrics.jsonl")).unwrap();
    let lines =
        metrics.iter().map(|m| format!("{} {} {} {} {}", m.epoch, m.train_loss, m.test_loss, m.test_acc1, m.lr));
    (weights, lines.collect())
}

/// A kill just after a checkpoint folder appears under its final name (issue 24, R9) — the first
/// checkpoint of the run or a later one — loses nothing: `eval` of the run reads that checkpoint,
/// and `--resume` continues from it (not "no checkpoint found", not the one before it) to the end
/// of the uninterrupted run, weights and metrics alike.
#[test]
fn a_kill_as_a_checkpoint_appears_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("t.toml"), tiny_fashion_config(100, 50, 3, r#"policy = "none""#)).unwrap();
    // `samix train` into `out`; `exit_at`: the checkpoint writer's test hook exits there (code
    // 137, as if killed).
    let train = |out: &str, resume: bool, exit_at: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_samix"));
        cmd.args(["train", "--config", "t.toml", "--out", out, "--device", "cpu"]).current_dir(tmp.path());
        if resume {
            cmd.arg("--resume");
        }
        if let Some(point) = exit_at {
            cmd.env(samix::train::checkpoint::EXIT_POINT_VAR, point);
        }
        cmd.output().unwrap()
    };
    let o = train("whole", false, None);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = final_state(&tmp.path().join("whole"), 3);
    for at in ["epoch-0001", "epoch-0002"] {
        let out = format!("cut-{at}");
        let o = train(&out, false, Some(&format!("checkpoint-visible:{at}")));
        assert_eq!(o.status.code(), Some(137), "the hook stops the run at {at}: {}", stderr(&o));
        assert!(tmp.path().join(&out).join("checkpoints").join(at).join("state.json").is_file(), "{at} is there");
        let o = samix_cli(&["eval", "--checkpoint", &out, "--device", "cpu"], tmp.path());
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        let epoch = at.trim_start_matches("epoch-").trim_start_matches('0');
        assert!(o.status.success() && said.contains(&format!("epoch {epoch})")), "eval reads {at}: {said}");
        let o = train(&out, true, None);
        let err = stderr(&o);
        assert!(o.status.success(), "--resume after a kill at {at}: {err}");
        assert!(err.contains("resumed from") && err.contains(at), "resumes from {at}: {err}");
        let cut = final_state(&tmp.path().join(&out), 3);
        assert_eq!(cut.1, whole.1, "metrics after a kill at {at}");
        assert_eq!(cut.0.len(), whole.0.len());
        for ((name, a), (_, b)) in cut.0.iter().zip(&whole.0) {
            assert!(a.equal(b), "{name} differs after a kill at {at}");
        }
    }
}

/// `samix config show` prints the SAMix sub-tables it promises — `mix.mixer`, `mix.mask_loss`,
/// `mix.mixer_loss`, `mix.ema`, `mix.mixer_optim` — with the values the run resolves them to,
/// supervised and under `[ssl]`, for SAMix and AutoMix; what it prints reads back to itself
/// (issue 24 R13; before: a config that left them unset showed no `mix.mixer`, `mix.mask_loss`
/// or `mix.mixer_loss` and an empty `[mix.mixer_optim]`).
#[test]
fn config_show_prints_the_samix_sub_tables_resolved() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("configs/quickstart.toml", "samix", "pair_local_global"),
        ("configs/quickstart.toml", "automix", "soft_ce"),
        ("configs/cifar100_r18_samix.toml", "samix", "pair_local_global"),
        ("configs/cifar100_moco_samix_cpu_smoke.toml", "samix", "local_global"),
    ];
    for (config, policy, loss) in cases {
        let set = format!("mix.policy={policy}");
        let o = samix_cli(&["config", "show", "--config", config, "--set", &set], root);
        assert!(o.status.success(), "{config}: {}", stderr(&o));
        let shown = String::from_utf8_lossy(&o.stdout).into_owned();
        let table = |name: &str| -> toml::Table {
            let all: toml::Table = toml::from_str(&shown).unwrap();
            let mix = all["mix"].as_table().unwrap();
            mix.get(name).and_then(|t| t.as_table()).cloned().unwrap_or_else(|| panic!("{config}: no mix.{name}"))
        };
        assert!(table("mixer").contains_key("reduction"), "{config} {policy}: {shown}");
        assert!(table("mask_loss").contains_key("weight"), "{config} {policy}: {shown}");
        assert_eq!(table("mixer_loss")["kind"].as_str(), Some(loss), "{config} {policy}");
        assert!(table("ema").contains_key("momentum"), "{config} {policy}");
        for key in ["lr", "min_lr", "momentum", "weight_decay"] {
            assert!(table("mixer_optim").contains_key(key), "{config} {policy}: no mix.mixer_optim.{key}: {shown}");
        }
        let path = tmp.path().join("shown.toml");
        std::fs::write(&path, &shown).unwrap();
        let again = samix_cli(&["config", "show", "--config", path.to_str().unwrap()], root);
        assert_eq!(String::from_utf8_lossy(&again.stdout), shown, "{config} {policy}: {}", stderr(&again));
    }
}
