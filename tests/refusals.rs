//! What samix once accepted silently or reported badly (issue 12, item 9): out-of-range values
//! and bad arguments refused naming their key, errors naming their cause once, and image folders
//! checked before training. Each case was accepted (or misreported) on 0e39cda.
mod common;
use common::tiny_fashion_config;
use samix::config::TrainConfig;
use std::path::Path;

fn tiny_batch_25() -> TrainConfig {
    TrainConfig::parse(&tiny_fashion_config(100, 50, 1, r#"policy = "none""#), &["train.batch_size=25".into()]).unwrap()
}

#[test]
fn values_accepted_silently_before_are_refused_naming_the_key() {
    let none = tiny_fashion_config(100, 50, 1, r#"policy = "none""#);
    let samix = tiny_fashion_config(100, 50, 1, r#"policy = "samix""#);
    let cases: &[(&str, &[&str], &str)] = &[
        // A zero resize made every image black (NaN sample coordinates).
        (&none, &["data.augment.image_size=28", "data.augment.test_resize=0"], "data.augment.test_resize"),
        // Without image_size, test_resize was silently ignored.
        (&none, &["data.augment.test_resize=32"], "data.augment.test_resize"),
        // test_limit = 0 trained and reported 0% every epoch.
        (&none, &["data.test_limit=0"], "data.test_limit"),
        (&none, &["data.train_limit=0"], "data.train_limit"),
        // NaN or negative SAMix options trained silently (or diverged with the wrong advice).
        (&samix, &["mix.mask_loss.mode=l1_variance", "mix.mask_loss.weight=nan"], "mix.mask_loss.weight"),
        (&samix, &["mix.mask_loss.mode=l1_variance", "mix.mask_loss.weight=-5"], "mix.mask_loss.weight"),
        (&samix, &["mix.mask_loss.mode=l1_variance", "mix.mask_loss.margin=-1"], "mix.mask_loss.margin"),
        (&samix, &["mix.mixer_loss.kind=pair_local_global", "mix.mixer_loss.eta=-3"], "mix.mixer_loss.eta"),
        (&samix, &["mix.mixer_loss.kind=pair_local_global", "mix.mixer_loss.eta=nan"], "mix.mixer_loss.eta"),
        (&samix, &["mix.mixer.lam_mul_k=nan"], "mix.mixer.lam_mul_k"),
        (&samix, &["mix.lam_margin=nan"], "mix.lam_margin"),
        (&samix, &["mix.mixer_optim.min_lr=nan"], "mix.mixer_optim.min_lr"),
        (&samix, &["mix.mixer_optim.weight_decay=nan"], "mix.mixer_optim.weight_decay"),
        // A probe's BN mode where nothing probes.
        (&samix, &["train.probe_bn=train"], "train.probe_bn"),
    ];
    for (text, set, key) in cases {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let err = TrainConfig::parse(text, &set).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(key), "{set:?} must be refused naming {key}: {err}");
    }
    // train.probe_bn = "train" outside linear evaluation: refused when the run starts (a linear
    // config is only complete once `samix linear` sets the backbone).
    let mut probe = tiny_batch_25();
    probe.train.probe_bn = samix::config::ProbeBn::Train;
    let info = samix::data::DatasetInfo {
        name: "fashion_mnist".into(),
        num_classes: 10,
        channels: 1,
        mean: vec![0.5],
        std: vec![0.5],
        class_names: (0..10).map(|c| c.to_string()).collect(),
    };
    let err = samix::train::supervised::SupervisedLearner::new(&probe, &info, tch::Device::Cpu).err();
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("train.probe_bn"));
    // --stop-after 0 wrote a summary of nulls and no checkpoint; now refused before anything.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let err = common::train_run(&tiny_batch_25(), &out, false, false, Some(0)).err().map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("--stop-after"));
    assert!(!out.exists());
}

/// Runs the `samix` binary; returns (success, stderr).
fn samix_cli(args: &[&str], cwd: &Path) -> (bool, String) {
    let o = common::samix_cli(args, cwd);
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn errors_name_their_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("c.toml"), tiny_fashion_config(100, 50, 1, r#"policy = "none""#)).unwrap();
    // A bad --set names the --set, not the file it was applied to.
    for set in ["optim.lr=abc", "optim.lr.x=1", "train.epochs=0"] {
        let (ok, err) = samix_cli(&["train", "--config", "c.toml", "--set", set, "--device", "cpu"], tmp.path());
        assert!(!ok && err.contains(&format!("--set `{set}`")) && !err.contains("c.toml"), "{set}: {err}");
    }
    // A key error in the file itself still names the file, with or without a --set beside it.
    std::fs::write(tmp.path().join("bad.toml"), "seed = 1\n[train]\nepochs = \"x\"\n").unwrap();
    let (ok, err) = samix_cli(&["train", "--config", "bad.toml", "--device", "cpu"], tmp.path());
    assert!(!ok && err.contains("bad.toml") && err.contains("train.epochs"), "{err}");
    let typo = tiny_fashion_config(100, 50, 1, r#"policy = "none""#).replace("epochs = 1", "epochz = 1");
    std::fs::write(tmp.path().join("typo.toml"), typo).unwrap();
    let (ok, err) =
        samix_cli(&["train", "--config", "typo.toml", "--set", "train.epochs=2", "--device", "cpu"], tmp.path());
    assert!(!ok && err.contains("typo.toml") && err.contains("epochz") && !err.contains("--set"), "{err}");
    // The OS's message appears once (it was printed twice: once in the message, once as the
    // error's source).
    let (ok, err) = samix_cli(&["train", "--config", "missing.toml", "--device", "cpu"], tmp.path());
    assert!(!ok && err.matches("No such file or directory").count() == 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A two-class image folder of 4 + 2 images per class, as PNG files.
fn image_folder(root: &Path) {
    for (split, n) in [("train", 4), ("val", 2)] {
        for (k, class) in ["a", "b"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(12, 10, |x, y| {
                    image::Rgb([(x * 20) as u8, (y * 20) as u8, (k * 90 + i) as u8])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

fn folder_config(root: &Path) -> TrainConfig {
    let text = format!(
        "seed = 1\n[data]\ndataset = \"image_folder\"\npath = \"{}\"\nworkers = 1\n[data.augment]\nimage_size = 8\n[model]\narch = \"resnet18\"\nbase_width = 4\nblocks = [1, 1, 1, 1]\n[mix]\npolicy = \"none\"\n[train]\nepochs = 1\nbatch_size = 2\nthreads = 1\n",
        root.display()
    );
    TrainConfig::parse(&text, &[]).unwrap()
}

#[test]
fn image_folders_are_checked_before_training_and_read_by_content() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("folder");
    image_folder(&root);
    // A JPEG saved under a `.png` name decodes (the format is read from the bytes).
    let jpeg = image::RgbImage::from_fn(12, 10, |x, _| image::Rgb([x as u8 * 9, 40, 90]));
    let mut bytes = Vec::new();
    jpeg.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(root.join("train/a/0.png"), &bytes).unwrap();
    let img = samix::data::folder::decode_rgb(&root.join("train/a/0.png")).unwrap();
    assert_eq!((img.channels, img.height, img.width), (3, 10, 12));
    common::train_run(&folder_config(&root), &tmp.path().join("ok"), false, false, None).unwrap();

    // An empty class folder is refused, naming it (it trained a head for a class never seen).
    std::fs::create_dir_all(root.join("train/c")).unwrap();
    let err = samix::data::folder::load_image_folder(&root).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("train/c") && err.contains("no images"), "{err}");
    std::fs::remove_dir(root.join("train/c")).unwrap();
    // Hidden folders and files tools leave (notebooks, macOS) are neither classes nor images.
    std::fs::create_dir_all(root.join("train/.ipynb_checkpoints")).unwrap();
    std::fs::write(root.join("train/a/._0.png"), b"resource fork").unwrap();
    let (train, _) = samix::data::folder::load_image_folder(&root).unwrap();
    assert_eq!((samix::data::Dataset::info(&train).num_classes, train.items().len()), (2, 8));

    // A corrupt test image is reported before training starts (it was found after the first
    // epoch), and the run directory is not created.
    let bad = root.join("val/b/1.png");
    let png = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &png[..png.len() / 2]).unwrap();
    let out = tmp.path().join("corrupt");
    let err = common::train_run(&folder_config(&root), &out, false, false, None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("val/b/1.png"), "{err}");
    assert!(!out.exists(), "nothing written for a run refused at the start");

    // `samix mix --image-size 0` on a folder names the flag (it named a config key).
    let (ok, err) = samix_cli(
        &["mix", "--policy", "mixup", "--data", root.to_str().unwrap(), "--out", "g.png", "--image-size", "0"],
        tmp.path(),
    );
    assert!(!ok && err.contains("--image-size"), "{err}");
}
