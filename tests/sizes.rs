//! The size policy (issue 24, R3): every quantity a user sizes, in a config or on the command
//! line, is refused above its limit when the config is read or the flag parsed, with one error
//! naming the key and the limit and a non-zero exit, instead of an allocation abort, a panic
//! inside libtorch or a build that never ends. Nothing here builds a network of the sizes it
//! refuses.
mod common;

use samix::config::TrainConfig;

/// `--set` overrides of the tiny test config, each above a limit, with the key and the limit
/// its error must name.
const ABOVE_LIMITS: &[(&str, &str, &str)] = &[
    ("data.augment.image_size=100000", "data.augment.image_size", "4096"),
    ("model.base_width=100000000", "model.base_width", "65536"),
    ("model.blocks=[100000,1,1,1]", "model.blocks", "1000"),
    ("ssl.feature_dim=100000000", "ssl.feature_dim", "1048576"),
    ("ssl.hidden_dim=4000000000", "ssl.hidden_dim", "1048576"),
    ("ssl.queue_size=100000000", "ssl.queue_size", "16777216"),
    ("train.batch_size=100000000", "train.batch_size", "1048576"),
    ("train.eval_batch_size=100000000", "train.eval_batch_size", "1048576"),
    ("train.epochs=100000000", "train.epochs", "1000000"),
    ("data.workers=100000", "data.workers", "1024"),
    ("data.prefetch=100000", "data.prefetch", "1024"),
    ("log.progress_every_s=1e300", "log.progress_every_s", "100000000"),
];

#[test]
fn every_user_sized_config_value_is_refused_above_its_limit_naming_key_and_limit() {
    let base = common::tiny_fashion_config(100, 100, 1, "policy = \"none\"");
    assert!(TrainConfig::parse(&base, &[]).is_ok());
    for (set, key, limit) in ABOVE_LIMITS {
        let err = match TrainConfig::parse(&base, &[set.to_string()]) {
            Ok(_) => panic!("{set} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key) && err.contains(limit) && !err.contains('\n'), "{set}: {err}");
    }
    // Values within every single limit that together make a network too large to allocate are
    // refused by the estimates, naming the keys that sized it.
    for (sets, key, what) in [
        (&["model.base_width=8192"][..], "model.base_width", "parameters"),
        (&["data.augment.image_size=4096", "train.batch_size=100000"][..], "train.batch_size", "GiB"),
        (&["ssl.feature_dim=1000000"][..], "ssl.feature_dim", "GiB"),
    ] {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let err = match TrainConfig::parse(&base, &sets) {
            Ok(_) => panic!("{sets:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(key) && err.contains(what), "{sets:?}: {err}");
    }
    // Generous for real use: an ImageNet ResNet-50 at 224 px and batch 1024 is accepted.
    let imagenet =
        ["model.arch=\"resnet50\"", "model.stem=\"imagenet\"", "model.base_width=64", "data.augment.image_size=224"];
    let sets: Vec<String> = imagenet.iter().map(|s| s.to_string()).chain(["train.batch_size=1024".into()]).collect();
    TrainConfig::parse(&base, &sets).unwrap();
}

#[test]
fn oversized_flags_and_config_values_exit_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, common::tiny_fashion_config(100, 100, 1, "policy = \"none\"")).unwrap();
    let fashion = common::fashion();
    let (config, fashion) = (config.to_str().unwrap(), fashion.to_str().unwrap());
    let cases: &[(&[&str], &str, &str)] = &[
        (&["bench", "--batch", "100000000", "--steps", "1", "--warmup", "0"], "--batch", "1048576"),
        // Within --batch's limit, but ResNet-18's first stage would take 256 GiB.
        (&["bench", "--batch", "1048576", "--steps", "1", "--warmup", "0"], "--batch", "GiB"),
        (
            &["mix", "--policy", "mixup", "--data", fashion, "--out", "g.png", "--image-size", "100000"],
            "--image-size",
            "4096",
        ),
        (&["mix", "--policy", "mixup", "--data", fashion, "--out", "g.png", "--n", "100000"], "--n", "1024"),
        (&["config", "show", "--config", config, "--set", "model.blocks=[100000,1,1,1]"], "model.blocks", "1000"),
        (
            &["train", "--config", config, "--out", "run", "--set", "model.base_width=100000000"],
            "model.base_width",
            "65536",
        ),
    ];
    for (args, key, limit) in cases {
        let o = common::samix_cli(args, tmp.path());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(key) && err.contains(limit) && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
    assert!(!tmp.path().join("run").exists() && !tmp.path().join("g.png").exists());
}
