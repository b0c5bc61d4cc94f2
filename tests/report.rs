//! The pictures of `samix report` (issue 23, item 5): the main top-1 chart shows a multi-head
//! run's best head beside its deployed one, and a line chart draws every series, in its own
//! colour inside the plot, for any values (none, one point, equal values, NaN/inf, 1e300).
mod common;
use common::tiny_fashion_config;
use image::RgbImage;
use samix::config::TrainConfig;
use samix::pictures::chart::{colour, LineChart, Series, HEIGHT, WIDTH};
use samix::train::metrics::{self, EpochMetrics};
use std::path::Path;

/// Below this row lies the legend (one row of it, under the x axis and its label): pixels above
/// it are the plot's.
const PLOT_BOTTOM: u32 = HEIGHT - 40;

fn epoch(epoch: usize, top1: f64, heads: &[(&str, f64)]) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: 1.0 / epoch as f64,
        test_loss: 1.0,
        test_acc1: top1,
        test_acc5: 99.0,
        lr: 0.1,
        images_per_sec: 100.0,
        loader_wait_s: 0.0,
        epoch_time_s: 1.0,
        extra: heads.iter().map(|(h, v)| (metrics::head_key(h), *v)).collect(),
    }
}

fn write_run(dir: &Path, lr: &str, history: &[EpochMetrics]) {
    std::fs::create_dir_all(dir).unwrap();
    let base = tiny_fashion_config(100, 50, 3, r#"policy = "none""#);
    let cfg = TrainConfig::parse(&base, &[lr.to_string(), "train.median_of_last=2".into()]).unwrap();
    std::fs::write(dir.join("config.toml"), cfg.to_toml().unwrap()).unwrap();
    metrics::write_metrics(&dir.join("metrics.jsonl"), history).unwrap();
}

/// A one-head run of three epochs (top-1 10, 12, 14), far below the others.
fn write_plain_run(dir: &Path) {
    write_run(dir, "optim.lr=0.2", &[epoch(1, 10.0, &[]), epoch(2, 12.0, &[]), epoch(3, 14.0, &[])]);
}

/// The rows of the plot (above the legend) holding pixels of exactly `rgb` in column `x`.
fn rows_of(img: &RgbImage, x: u32, rgb: [u8; 3]) -> Vec<u32> {
    (0..PLOT_BOTTOM).filter(|&y| img.get_pixel(x, y).0 == rgb).collect()
}

/// The number of pixels of exactly `rgb` in the plot (above the legend).
fn plot_pixels(img: &RgbImage, rgb: [u8; 3]) -> usize {
    img.enumerate_pixels().filter(|(_, y, p)| *y < PLOT_BOTTOM && p.0 == rgb).count()
}

#[test]
fn the_main_chart_shows_the_best_head_beside_the_deployed_one() {
    let tmp = tempfile::tempdir().unwrap();
    // An online-SAMix-like run: the deployed `top-1` is the EMA network (= one_k, low); one_q
    // has the best median of the last 2 epochs (89), mix_q the best single epoch (95) but not the
    // best median. And a one-head run, far below both.
    let samix: Vec<EpochMetrics> = [(40.0, 60.0, 30.0), (50.0, 88.0, 95.0), (60.0, 90.0, 40.0)]
        .iter()
        .enumerate()
        .map(|(i, &(k, q, mq))| epoch(i + 1, k, &[("one_k", k), ("one_q", q), ("mix_q", mq)]))
        .collect();
    write_run(&tmp.path().join("samix"), "optim.lr=0.05", &samix);
    write_plain_run(&tmp.path().join("mixup"));
    let dirs = [tmp.path().join("samix"), tmp.path().join("mixup")];
    let out = tmp.path().join("rep");
    let table = samix::report::write_report(&dirs, &out).unwrap();
    // The table keeps every head of each group.
    for head in ["top-1", "one_k", "one_q", "mix_q"] {
        assert!(table.contains(&format!("| samix | 1 | 3 | {head} |")), "{table}");
    }
    let groups = samix::report::group(dirs.iter().map(|d| samix::report::load_run(d).unwrap()).collect());
    assert_eq!(samix::report::best_head(&groups[0]).map(|h| h.head.as_str()), Some("one_q"));
    assert!(samix::report::best_head(&groups[1]).is_none(), "a one-head run has no further head");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("deployed head (`top-1`) beside the best further head"), "{md}");
    assert!(md.contains("(top1.png)") && md.contains("(top1_one_q.png)"), "{md}");
    // Three lines: samix's deployed head, its best head, mixup; each drawn in its colour.
    let img = image::open(out.join("top1.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    let [deployed, best, mixup] = [0, 1, 2].map(colour);
    for rgb in [deployed, best, mixup] {
        assert!(plot_pixels(&img, rgb) > 200, "top1.png has no line of colour {rgb:?}");
    }
    assert_eq!(plot_pixels(&img, colour(3)), 0, "a fourth line (another head) was drawn");
    // Mid-chart (epoch 2), the best head (88) lies above the deployed one (50), which lies above
    // mixup (12).
    let x = (0..WIDTH).find(|&x| !rows_of(&img, x, best).is_empty()).unwrap() + (WIDTH / 2 - 60);
    let top = |rgb| rows_of(&img, x, rgb).into_iter().min().unwrap_or_else(|| panic!("no {rgb:?} at x = {x}"));
    assert!(top(best) < top(deployed) && top(deployed) < top(mixup), "{x}");
}

/// The masks' distance from λ gets its charts where runs log it (online SAMix): one line per
/// such group, none for a run without a Mixer.
#[test]
fn mask_area_charts_show_the_runs_that_have_a_mixer() {
    let tmp = tempfile::tempdir().unwrap();
    let samix: Vec<EpochMetrics> = [0.30, 0.20, 0.05]
        .iter()
        .enumerate()
        .map(|(i, &gap)| {
            let mut e = epoch(i + 1, 50.0, &[]);
            for (term, v) in samix::samix::mask::AREA_TERMS.iter().zip([gap, gap / 2.0, gap * 2.0, gap]) {
                e.extra.insert(term.to_string(), v);
            }
            e
        })
        .collect();
    write_run(&tmp.path().join("samix"), "optim.lr=0.05", &samix);
    write_plain_run(&tmp.path().join("mixup"));
    let out = tmp.path().join("rep");
    samix::report::write_report(&[tmp.path().join("samix"), tmp.path().join("mixup")], &out).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for chart in ["mask_gap_mb.png", "mask_far_mb.png"] {
        assert!(md.contains(&format!("({chart})")), "{chart} not in the report: {md}");
        let img = image::open(out.join(chart)).unwrap().to_rgb8();
        assert!(plot_pixels(&img, colour(0)) > 100, "{chart}: the SAMix run's line is missing");
        assert_eq!(plot_pixels(&img, colour(1)), 0, "{chart}: a line for the run without a Mixer");
    }
    // Without any Mixer run, no such chart.
    let out = tmp.path().join("rep_mixup");
    samix::report::write_report(&[tmp.path().join("mixup")], &out).unwrap();
    assert!(!out.join("mask_gap_mb.png").exists());
}

/// One chart's points: a list per series.
type Lines = Vec<Vec<(f64, f64)>>;

/// Each case's name and its series' points.
fn cases() -> Vec<(&'static str, Lines)> {
    let nan = f64::NAN;
    vec![
        ("no series", vec![]),
        ("a series without points", vec![vec![], vec![(1.0, 2.0), (2.0, 3.0)]]),
        ("one point", vec![vec![(1.0, 0.1)]]),
        ("equal values", vec![vec![(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)], vec![(1.0, 0.0), (3.0, 0.0)]]),
        ("NaN and infinities", vec![vec![(1.0, 1.0), (2.0, nan), (3.0, f64::INFINITY), (4.0, 2.0), (nan, 3.0)]]),
        ("huge values", vec![vec![(1.0, 1e100), (2.0, -1e300)], vec![(1.0, f64::MAX), (2.0, 0.5)]]),
    ]
}

#[test]
fn a_line_chart_draws_each_series_in_its_colour_for_any_values() {
    let tmp = tempfile::tempdir().unwrap();
    for (case, lines) in cases() {
        let series: Vec<Series> =
            lines.iter().enumerate().map(|(k, p)| Series { name: format!("series {k}"), points: p.clone() }).collect();
        let chart = LineChart { title: case.into(), x_label: "epoch".into(), y_label: "value".into(), series };
        let path = tmp.path().join(format!("{case}.png"));
        chart.write_png(&path).unwrap_or_else(|e| panic!("{case}: {e}"));
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT), "{case}");
        for (k, points) in lines.iter().enumerate() {
            let drawn = plot_pixels(&img, colour(k));
            let finite = points.iter().any(|(x, y)| x.is_finite() && y.is_finite());
            // A point is a dot of radius 3 (at least 9 pixels); a series without one has none.
            assert_eq!(drawn >= 9, finite, "{case}: series {k} has {drawn} pixels of its colour in the plot");
        }
    }
}
