//! What a run shows, records and predicts (issue 16): TensorBoard event files read back by TensorBoard's own
//! reader with exact values and steps, progress as plain lines without a terminal, `--quiet`, and
//! `samix config show`, and `samix predict` against the network's own logits.
mod common;
use common::{samix_cli, tiny_fashion_config};
use samix::config::TrainConfig;
use samix::train::metrics;
use std::path::Path;

/// TensorBoard's `EventAccumulator` (the venv's `tensorboard` package) over `dir`, as JSON:
/// `{"scalars": {tag: [[step, value]...]}, "images": {tag: [[step, width, height, bytes]...]}}`.
fn read_with_tensorboard(dir: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)] for t in tags["images"]},
}))
"#;
    serde_json::from_slice(&common::venv_python(&[std::ffi::OsStr::new("-c"), script.as_ref(), dir.as_os_str()]))
        .unwrap()
}

/// The rows of a tag, each number as f32: TensorBoard stores scalars as f32, and the JSON
/// round trip of their f64 form is exact only to f32 (serde_json's default float parsing).
fn series(v: &serde_json::Value, kind: &str, tag: &str) -> Vec<Vec<f32>> {
    let rows = v[kind][tag].as_array().unwrap_or_else(|| panic!("no {kind} `{tag}` in {v}"));
    rows.iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect()
}

#[test]
fn tensorboard_reads_back_every_scalar_and_image_written() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // 40 steps per epoch, 2 epochs: step scalars every 20 steps, the mask grid after the last.
    let cfg =
        TrainConfig::parse(&tiny_fashion_config(1000, 100, 2, r#"policy = "samix""#), &["train.batch_size=25".into()])
            .unwrap();
    common::train_run(&cfg, &out, false, false, None).unwrap();
    let tb = read_with_tensorboard(&out.join("tensorboard"));
    let m = metrics::read_metrics(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(m.len(), 2);
    // Epoch scalars at step = epoch, exactly the metrics (as f32, TensorBoard's simple_value).
    type Field = fn(&metrics::EpochMetrics) -> f64;
    let fields: [(&str, Field); 4] = [
        ("epoch/train_loss", |e| e.train_loss),
        ("epoch/test_acc1", |e| e.test_acc1),
        ("epoch/test_loss", |e| e.test_loss),
        ("epoch/lr", |e| e.lr),
    ];
    for (tag, value) in fields {
        let want: Vec<Vec<f32>> = m.iter().map(|e| vec![e.epoch as f32, value(e) as f32]).collect();
        assert_eq!(series(&tb, "scalars", tag), want, "{tag}");
    }
    // Every per-head accuracy and loss term of the SAMix learner, too.
    for key in m[0].extra.keys() {
        let want: Vec<Vec<f32>> = m.iter().map(|e| vec![e.epoch as f32, e.extra[key] as f32]).collect();
        assert_eq!(series(&tb, "scalars", &format!("epoch/{key}")), want, "{key}");
    }
    assert!(m[0].extra.contains_key("acc1_mix") || m[0].extra.len() >= 4, "{:?}", m[0].extra);
    let steps: Vec<f32> = series(&tb, "scalars", "step/train_loss").iter().map(|r| r[0]).collect();
    assert_eq!(steps, vec![20.0, 40.0, 60.0, 80.0]);
    assert!(series(&tb, "scalars", "step/lr").iter().all(|r| r[1] > 0.0));
    // The mask grid as an image of the size of the PNG written.
    let png = out.join("visuals/masks_epoch_0002.png");
    let (w, h) = image::image_dimensions(&png).unwrap();
    let bytes = std::fs::metadata(&png).unwrap().len() as f32;
    assert_eq!(series(&tb, "images", "pictures/masks"), vec![vec![2.0, w as f32, h as f32, bytes]]);

    // `log.tensorboard = false` writes no event file.
    let off = tmp.path().join("off");
    let cfg =
        TrainConfig::parse(&tiny_fashion_config(100, 50, 1, r#"policy = "none""#), &["log.tensorboard=false".into()])
            .unwrap();
    common::train_run(&cfg, &off, false, false, None).unwrap();
    assert!(!off.join("tensorboard").exists());
}

#[test]
fn progress_is_plain_lines_without_a_terminal_and_quiet_prints_results_only() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_fashion_config(400, 50, 1, "policy = \"mixup\"\nalpha = 1.0")
        .replace("batch_size = 50", "batch_size = 25");
    std::fs::write(tmp.path().join("c.toml"), text).unwrap();
    // stderr is a pipe here: lines, not a bar (no carriage returns), one per step at 0 s.
    let o = samix_cli(
        &["train", "--config", "c.toml", "--out", "a", "--device", "cpu", "--set", "log.progress_every_s=0"],
        tmp.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains('\r'), "no progress bar drawn into a pipe: {err:?}");
    let steps: Vec<&str> = err.lines().filter(|l| l.starts_with("epoch 1/1 step ")).collect();
    assert_eq!(steps.len(), 16, "{err}");
    assert!(steps[0].contains("step 1/16") && steps[0].contains("ETA") && steps[0].contains("(run "), "{}", steps[0]);
    assert!(err.contains("test top-1"), "the epoch line: {err}");
    // --quiet: nothing but the result on stdout.
    let o = samix_cli(&["--quiet", "train", "--config", "c.toml", "--out", "b", "--device", "cpu"], tmp.path());
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "quiet prints nothing on stderr");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("done: 1 epochs"));
}

#[test]
fn config_show_prints_every_key_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("c.toml"), tiny_fashion_config(100, 50, 1, r#"policy = "samix""#)).unwrap();
    let o = samix_cli(&["config", "show", "--config", "c.toml", "--set", "optim.lr=0.2"], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8_lossy(&o.stdout);
    // Defaults the file never states are there, the --set applied, and the text is a config that
    // parses back to the same.
    for key in ["[log]", "tensorboard = true", "momentum = 0.9", "lr = 0.2", "[mix.ema]", "checkpoint_every"] {
        assert!(shown.contains(key), "`{key}` missing from:\n{shown}");
    }
    let again = TrainConfig::parse(&shown, &[]).unwrap();
    assert_eq!(again.to_toml().unwrap(), shown);
    let o = samix_cli(&["config", "show", "--config", "c.toml", "--set", "optim.lr=abc"], tmp.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--set `optim.lr=abc`"));
}

#[test]
fn predict_gives_the_classes_of_the_networks_logits() {
    let _rng = common::torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg =
        TrainConfig::parse(&tiny_fashion_config(400, 8, 1, r#"policy = "none""#), &["train.batch_size=25".into()])
            .unwrap();
    common::train_run(&cfg, &out, false, false, None).unwrap();
    // The first 8 test images as grey PNG files, and the network's own logits on them (the eval
    // loader, no shuffling).
    let splits = samix::data::open_splits(&cfg.data).unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..8 {
        let img = splits.test.load(i).unwrap();
        let grey = image::GrayImage::from_raw(img.width as u32, img.height as u32, img.data.clone()).unwrap();
        grey.save(images.join(format!("{i}.png"))).unwrap();
    }
    let ckpt = samix::train::checkpoint::open(&out).unwrap();
    let model = samix::train::Model::from_checkpoint(&ckpt, &cfg, splits.test.info(), tch::Device::Cpu).unwrap();
    let batch =
        samix::train::eval_loader(&cfg, splits.test.clone(), tch::Device::Cpu).epoch(0).next().unwrap().unwrap();
    let logits = tch::nn::ModuleT::forward_t(&model.net, &batch.images, false);
    let want: Vec<i64> = Vec::try_from(logits.argmax(-1, false)).unwrap();

    let o = samix_cli(
        &["predict", "--checkpoint", "run", "--top", "3", "--format", "json", "--device", "cpu", "images"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 8);
    let names = &splits.test.info().class_names;
    for (i, p) in got.iter().enumerate() {
        assert!(p["path"].as_str().unwrap().ends_with(&format!("{i}.png")));
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["class"].as_i64().unwrap(), want[i], "image {i}");
        assert_eq!(top[0]["name"].as_str().unwrap(), names[want[i] as usize]);
        let probs: Vec<f64> = top.iter().map(|r| r["probability"].as_f64().unwrap()).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6, "{probs:?}");
    }
    // CSV: a header and one row per image and rank; a larger colour image of another size is
    // brought to the network's input (grey, 28 px) rather than refused.
    let big = image::RgbImage::from_fn(90, 60, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, 100]));
    big.save(tmp.path().join("big.jpg")).unwrap();
    let o = samix_cli(
        &["predict", "--checkpoint", "run", "--top", "2", "--device", "cpu", "big.jpg", "images/0.png"],
        tmp.path(),
    );
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(csv.lines().next(), Some("path,rank,class,name,probability"));
    assert_eq!(csv.lines().count(), 1 + 2 * 2, "{csv}");
    let o = samix_cli(&["predict", "--checkpoint", "run", "--device", "cpu", "missing.png"], tmp.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("missing.png"));
}

fn epoch(epoch: usize, acc1: f64) -> metrics::EpochMetrics {
    metrics::EpochMetrics {
        epoch,
        train_loss: 3.0 - epoch as f64,
        test_loss: 2.0,
        test_acc1: acc1,
        test_acc5: acc1 + 20.0,
        lr: 0.1 / epoch as f64,
        images_per_sec: 100.0,
        loader_wait_s: 0.0,
        epoch_time_s: 1.0,
        extra: Default::default(),
    }
}

#[test]
fn report_groups_runs_that_differ_by_seed_as_mean_and_std() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_fashion_config(100, 50, 2, r#"policy = "none""#);
    // Two seeds of one config, and another config: top-1 per epoch as given.
    let runs = [
        ("a_s1", "seed=1", "optim.lr=0.05", [40.0, 50.0]),
        ("a_s2", "seed=2", "optim.lr=0.05", [44.0, 54.0]),
        ("b", "seed=1", "optim.lr=0.2", [30.0, 40.0]),
    ];
    for (name, seed, lr, acc) in &runs {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg =
            TrainConfig::parse(&base, &[seed.to_string(), lr.to_string(), "train.median_of_last=2".into()]).unwrap();
        std::fs::write(dir.join("config.toml"), cfg.to_toml().unwrap()).unwrap();
        metrics::write_metrics(&dir.join("metrics.jsonl"), &[epoch(1, acc[0]), epoch(2, acc[1])]).unwrap();
    }
    let o = samix_cli(&["report", "a_s1", "a_s2", "b", "--out", "rep"], tmp.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    // a: final 50, 54 → 52 ± 2.83 (sample std √8); median of the last 2: 45, 49 → 47 ± 2.83.
    assert!(table.contains("| a | 2 | 2 | top-1 | 52.00 ± 2.83 | 52.00 ± 2.83 | 47.00 ± 2.83 (N=2) |"), "{table}");
    assert!(table.contains("| b | 1 | 2 | top-1 | 40.00 | 40.00 | 35.00 (N=2) |"), "{table}");
    let md = std::fs::read_to_string(tmp.path().join("rep/report.md")).unwrap();
    assert!(md.contains("52.00 ± 2.83"));
    for chart in ["loss.png", "top1.png", "lr.png"] {
        assert!(md.contains(&format!("({chart})")), "{md}");
        let img = image::open(tmp.path().join("rep").join(chart)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 560));
        // Both groups' lines are drawn, in the first two palette colours.
        for colour in [[31, 119, 180], [255, 127, 14]] {
            assert!(img.pixels().any(|p| p.0 == colour), "{chart} lacks a line of colour {colour:?}");
        }
    }
    let o = samix_cli(&["report", "missing", "--out", "rep2"], tmp.path());
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("missing"));
}

#[test]
fn grids_are_upscaled_and_labelled() {
    use samix::pictures::{cell_scale, write_grid, GridLabels};
    let tmp = tempfile::tempdir().unwrap();
    let rows = [
        tch::Tensor::rand([2, 3, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
        tch::Tensor::zeros([2, 1, 8, 8], (tch::Kind::Float, tch::Device::Cpu)),
    ];
    let path = tmp.path().join("g.png");
    let labels = GridLabels {
        rows: vec!["first".into(), "mask".into()],
        columns: vec!["λ=0.25".into(), "λ=0.75".into()],
        legend: Some("white = partner".into()),
    };
    write_grid(&rows, &labels, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    let k = cell_scale(8, 8);
    assert!(8 * k >= samix::pictures::MIN_CELL && 8 * (k - 1) < samix::pictures::MIN_CELL);
    // Find the first cell: its top-left 8k×8k block is the first image, each pixel a k×k square.
    let first = Vec::<f32>::try_from(rows[0].get(0).flatten(0, -1)).unwrap();
    let (left, top) = (0..img.width())
        .flat_map(|x| (0..img.height()).map(move |y| (x, y)))
        .find(|&(x, y)| {
            let want = [0, 1, 2].map(|c| (first[c * 64] * 255.0).round() as u8);
            img.get_pixel(x, y).0 == want && x > 40
        })
        .unwrap();
    for (y, x) in [(0usize, 0usize), (3, 5), (7, 7)] {
        let want = [0, 1, 2].map(|c| (first[c * 64 + y * 8 + x] * 255.0).round() as u8);
        for (dy, dx) in [(0, 0), (k - 1, k - 1)] {
            let p = img.get_pixel(left + (x * k + dx) as u32, top + (y * k + dy) as u32).0;
            assert_eq!(p, want, "pixel ({y}, {x}) of the first image, upscaled ×{k}");
        }
    }
    // Row labels are drawn left of the cells, column labels under them.
    let ink = |x0: u32, x1: u32, y0: u32, y1: u32| (x0..x1).any(|x| (y0..y1).any(|y| img.get_pixel(x, y).0[0] < 60));
    assert!(ink(0, left, top, top + 8 * k as u32), "a row label");
    let below = top + 2 * (8 * k as u32) + 8;
    assert!(ink(left, left + 8 * k as u32, below, below + 20), "a column label");
}

#[test]
fn summary_reports_each_heads_median_and_the_best_head() {
    // Issue 11: the reference reports, per head, the median of the last N epochs, then the best
    // head. Three epochs, N = 3: one_k 80/81/82 → 81, one_q 85/90/88 → 88 (the best).
    let mut history: Vec<metrics::EpochMetrics> = (1..=3).map(|e| epoch(e, 79.0 + e as f64)).collect();
    for (m, (k, q)) in history.iter_mut().zip([(80.0, 85.0), (81.0, 90.0), (82.0, 88.0)]) {
        m.extra.insert("acc1_one_k".into(), k);
        m.extra.insert("acc1_one_q".into(), q);
        m.extra.insert("loss_mask".into(), 0.1);
    }
    let s = metrics::summarize(&history, 3, 1.0, "Cpu".into(), 0);
    assert_eq!(s.median_by_head, [("one_k".to_string(), 81.0), ("one_q".to_string(), 88.0)].into_iter().collect());
    assert_eq!((s.best_head.as_deref(), s.best_head_median), (Some("one_q"), Some(88.0)));
    assert_eq!(s.median_acc1, 81.0, "the deployed head's median stays as it was");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["best_head"], "one_q");
    assert_eq!(json["median_by_head"]["one_k"], 81.0);
    // A single-head run has none of these.
    let plain = metrics::summarize(
        &history.iter().map(|m| epoch(m.epoch, m.test_acc1)).collect::<Vec<_>>(),
        3,
        1.0,
        "Cpu".into(),
        0,
    );
    assert!(plain.median_by_head.is_empty() && plain.best_head.is_none());
    assert!(serde_json::to_value(&plain).unwrap().get("best_head").is_none());
    // The reference script's figure: k = 3 keeps 4 records (all 3 here); one_q's median over
    // the first 2 is 87.5, over all 3 it is 88, the highest of every head's.
    assert_eq!(s.reference_script_median, Some(88.0));
}

/// The reference script's figure on a one-head run, by hand: k = 10 keeps the last 12 epochs
/// (3..14: 50, 51, …, 60, then 0); the median of the first 11 (55) beats that of all 12 (54.5).
/// Epochs 1 and 2 (100) lie outside: with them the figure would be 56.
#[test]
fn the_reference_scripts_median_is_reproduced() {
    let values: Vec<f64> = [100.0, 100.0].into_iter().chain((50..=60).map(f64::from)).chain([0.0]).collect();
    let history: Vec<metrics::EpochMetrics> = values.iter().enumerate().map(|(i, &v)| epoch(i + 1, v)).collect();
    let s = metrics::summarize(&history, 10, 1.0, "Cpu".into(), 0);
    assert_eq!(s.reference_script_median, Some(55.0));
    assert_eq!(s.median_acc1, 55.5, "samix's own median of the last 10 (0, 52..60)");
}

/// A metrics value of 1e100 or more once made `samix report` loop for ever: its tick label (101
/// digits) was wider than the chart, the plot's width wrapped below zero and a line was drawn
/// over billions of steps. The chart is written, its labels stay short, and nothing else changes
/// for ordinary values.
#[test]
fn a_chart_of_huge_values_is_drawn_with_short_labels() {
    use samix::pictures::chart::{tick_text, LineChart, Series};
    let dir = tempfile::tempdir().unwrap();
    for values in [[1.0, 1e100], [-1e300, 1e300], [f64::MAX, 0.5]] {
        let chart = LineChart {
            title: "huge".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![Series { name: "run".into(), points: vec![(1.0, values[0]), (2.0, values[1])] }],
        };
        let path = dir.path().join("huge.png");
        chart.write_png(&path).unwrap();
        assert!(image::open(&path).is_ok(), "{values:?}: no readable chart");
    }
    assert!(tick_text(1e100, 1e99).len() <= 10, "{}", tick_text(1e100, 1e99));
    assert_eq!(tick_text(72.5, 0.5), "72.5");
    assert_eq!(tick_text(3.0, 1.0), "3");
}

/// `metrics.jsonl` is re-read and rewritten when a run resumes; every value must come back
/// bit for bit, or a resumed run's rows differ from an uninterrupted run's in their last digit
/// (issue 24, R14: serde_json's default float parser is not correctly rounded).
#[test]
fn metrics_survive_a_rewrite_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut history = Vec::new();
    for epoch in 1..=200 {
        let mut value = || f64::from_bits(rng.gen::<u64>() >> 2) * if rng.gen::<bool>() { 1.0 } else { 1e-300 };
        history.push(metrics::EpochMetrics {
            epoch,
            train_loss: value(),
            test_loss: value(),
            test_acc1: value(),
            test_acc5: value(),
            lr: value(),
            images_per_sec: value(),
            loader_wait_s: value(),
            epoch_time_s: value(),
            extra: [("loss_mix_k".to_string(), value())].into_iter().collect(),
        });
    }
    metrics::write_metrics(&path, &history).unwrap();
    let first = std::fs::read(&path).unwrap();
    let back = metrics::read_metrics(&path).unwrap();
    metrics::write_metrics(&path, &back).unwrap();
    let bits = |m: &metrics::EpochMetrics| [m.train_loss, m.test_loss, m.test_acc1, m.lr].map(f64::to_bits);
    let changed = history.iter().zip(&back).filter(|(a, b)| bits(a) != bits(b)).count();
    assert_eq!(changed, 0, "{changed} of 200 rows changed in a read and rewrite");
    assert!(std::fs::read(&path).unwrap() == first, "the rewritten file differs");
}
