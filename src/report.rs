//! `samix report`: runs side by side. Charts (PNG) of train loss, test top-1 of every head and the
//! learning rate against epochs, and a markdown table of the final, best and median-of-last-N
//! top-1 of every head. The main chart (`top1.png`) shows each group's deployed head (`top-1`)
//! and, for runs with several heads, the best of them beside it (the one with the highest
//! median of the last N epochs, as `summary.json`'s `best_head`). Runs whose configs differ only
//! by `seed` form one group, shown as mean ± sample standard deviation with the count. Reads run
//! directories (`config.toml`, `metrics.jsonl`); writes only the report folder.
use crate::config::TrainConfig;
use crate::pictures::chart::{LineChart, Series};
use crate::train::metrics::{median_of_last, read_metrics, EpochMetrics};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One run directory's record.
#[derive(Clone, Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub name: String,
    pub seed: u64,
    pub median_of_last: usize,
    pub metrics: Vec<EpochMetrics>,
    /// The config without its seed: runs with equal keys are repeats of one experiment.
    group_key: String,
}

/// Mean, sample standard deviation (when n ≥ 2) and count of one figure over a group's runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let std = (n >= 2).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Stat { mean, std, n }
    }
}

impl std::fmt::Display for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.std {
            Some(s) => write!(f, "{:.2} ± {s:.2}", self.mean),
            None => write!(f, "{:.2}", self.mean),
        }
    }
}

/// Final, best and median-of-last-N top-1 of one head over a group.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadRow {
    pub head: String,
    pub last: Stat,
    pub best: Stat,
    pub median: Stat,
}

/// A group of runs that differ only by seed.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub runs: Vec<Run>,
    pub heads: Vec<HeadRow>,
}

/// Reads a run directory.
pub fn load_run(dir: &Path) -> Result<Run> {
    let config_path = dir.join("config.toml");
    let config = TrainConfig::load_stored(&config_path, &[])?;
    let metrics = read_metrics(&dir.join("metrics.jsonl"))?;
    if metrics.is_empty() {
        return Err(Error::run(dir, "has no finished epoch in metrics.jsonl yet"));
    }
    // The seed, where the data lies, how it is loaded and what is logged do not make another
    // experiment.
    let table = config.table_without(&["seed", "data.path", "data.workers", "data.prefetch", "log"])?;
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = canonical.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Run {
        dir: dir.to_path_buf(),
        name,
        seed: config.seed,
        median_of_last: config.train.median_of_last,
        metrics,
        group_key: table.to_string(),
    })
}

/// The heads a run reports: `top-1` (the deployed classifier) and each further head.
fn heads(run: &Run) -> Vec<String> {
    let mut out = vec!["top-1".to_string()];
    if let Some(m) = run.metrics.first() {
        out.extend(m.head_acc1().map(|(head, _)| head.to_string()));
    }
    out
}

fn head_values(run: &Run, head: &str) -> Vec<f64> {
    run.metrics.iter().map(|m| if head == "top-1" { m.test_acc1 } else { m.acc1_of(head) }).collect()
}

/// The longest common prefix of the names, without a trailing separator (`a_s1`, `a_s2` → `a`).
fn group_name(runs: &[Run]) -> String {
    let first = &runs[0].name;
    if runs.len() == 1 {
        return first.clone();
    }
    let mut n = first.len();
    for r in &runs[1..] {
        n = n.min(first.bytes().zip(r.name.bytes()).take_while(|(a, b)| a == b).count());
    }
    while n > 0 && !first.is_char_boundary(n) {
        n -= 1;
    }
    let prefix = first[..n].trim_end_matches(['_', '-', '.', ' ']);
    let prefix = prefix.strip_suffix("seed").or_else(|| prefix.strip_suffix("_s")).unwrap_or(prefix);
    let prefix = prefix.trim_end_matches(['_', '-', '.', ' ']);
    if prefix.is_empty() {
        first.clone()
    } else {
        prefix.to_string()
    }
}

/// Groups runs (in the order first seen) and computes each group's rows.
pub fn group(runs: Vec<Run>) -> Vec<Group> {
    let mut groups: Vec<Vec<Run>> = Vec::new();
    for run in runs {
        match groups.iter_mut().find(|g| g[0].group_key == run.group_key) {
            Some(g) => g.push(run),
            None => groups.push(vec![run]),
        }
    }
    groups
        .into_iter()
        .map(|runs| {
            let heads = heads(&runs[0])
                .into_iter()
                .map(|head| {
                    let per_run: Vec<Vec<f64>> = runs.iter().map(|r| head_values(r, &head)).collect();
                    let last: Vec<f64> = per_run.iter().map(|v| *v.last().unwrap_or(&f64::NAN)).collect();
                    let best: Vec<f64> = per_run.iter().map(|v| v.iter().copied().fold(f64::NAN, f64::max)).collect();
                    let median: Vec<f64> =
                        per_run.iter().zip(&runs).map(|(v, r)| median_of_last(v, r.median_of_last)).collect();
                    HeadRow { head, last: Stat::of(&last), best: Stat::of(&best), median: Stat::of(&median) }
                })
                .collect();
            Group { name: group_name(&runs), runs, heads }
        })
        .collect()
}

/// The markdown table of the groups.
pub fn table(groups: &[Group]) -> String {
    let mut out = String::from("| run | n | epochs | head | final top-1 | best top-1 | median of last N |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for g in groups {
        let epochs = g.runs.iter().map(|r| r.metrics.len()).min().unwrap_or(0);
        let n_last = g.runs[0].median_of_last.min(epochs);
        for h in &g.heads {
            out.push_str(&format!(
                "| {} | {} | {epochs} | {} | {} | {} | {} (N={n_last}) |\n",
                g.name,
                g.runs.len(),
                h.head,
                h.last,
                h.best,
                h.median
            ));
        }
    }
    out
}

/// The mean over a group's runs of `value` per epoch (epochs all its runs reached).
fn mean_curve(g: &Group, value: impl Fn(&EpochMetrics) -> f64) -> Vec<(f64, f64)> {
    let epochs = g.runs.iter().map(|r| r.metrics.len()).min().unwrap_or(0);
    (0..epochs)
        .map(|i| {
            let vals: Vec<f64> = g.runs.iter().map(|r| value(&r.metrics[i])).collect();
            (g.runs[0].metrics[i].epoch as f64, vals.iter().sum::<f64>() / vals.len() as f64)
        })
        .collect()
}

/// The further head of `g` (not `top-1`) with the highest median-of-last-N top-1, its mean over
/// the group's runs: how `metrics::summarize` picks a run's `best_head`. None for one-head runs.
pub fn best_head(g: &Group) -> Option<&HeadRow> {
    g.heads.iter().skip(1).filter(|h| h.median.mean.is_finite()).max_by(|a, b| a.median.mean.total_cmp(&b.median.mean))
}

/// The lines of the main chart: per group its deployed head (`top-1`) and, where it has further
/// heads, the best of them beside it (a single line when the two curves are the same).
fn top1_series(groups: &[Group]) -> Vec<Series> {
    let mut out = Vec::new();
    for g in groups {
        let deployed = mean_curve(g, |m| m.test_acc1);
        let Some(best) = best_head(g) else {
            out.push(Series { name: legend(g), points: deployed });
            continue;
        };
        let points = mean_curve(g, |m| m.acc1_of(&best.head));
        if points == deployed {
            let name = format!("{}: top-1 (deployed) = {} (best head)", legend(g), best.head);
            out.push(Series { name, points });
        } else {
            out.push(Series { name: format!("{}: top-1 (deployed)", legend(g)), points: deployed });
            out.push(Series { name: format!("{}: {} (best head)", legend(g), best.head), points });
        }
    }
    out
}

fn legend(g: &Group) -> String {
    if g.runs.len() > 1 {
        format!("{} (n={})", g.name, g.runs.len())
    } else {
        g.name.clone()
    }
}

/// The charts of the Mixer's masks against λ, drawn for the groups whose runs log them (online
/// SAMix/AutoMix and SAMix-SSL; [`crate::samix::mask::AREA_TERMS`]).
const MASK_AREA_CHARTS: [(&str, &str, &str); 2] = [
    ("mask_gap_mb", "Mixer-branch mask: mean |area − λ|", "|area − λ|"),
    ("mask_far_mb", "Mixer-branch mask: share of samples with |area − λ| > 0.25", "share"),
];

/// Writes `report.md` and its charts into `out`; returns the markdown table.
pub fn write_report(run_dirs: &[PathBuf], out: &Path) -> Result<String> {
    if run_dirs.is_empty() {
        return Err(Error::Argument("name at least one run directory".into()));
    }
    let runs = run_dirs.iter().map(|d| load_run(d)).collect::<Result<Vec<_>>>()?;
    let groups = group(runs);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut charts: Vec<(String, String)> = Vec::new();
    let draw = |file: &str, title: &str, y: &str, series: Vec<Series>| -> Result<(String, String)> {
        let c = LineChart { title: title.into(), x_label: "epoch".into(), y_label: y.into(), series };
        c.write_png(&out.join(file))?;
        Ok((title.to_string(), file.to_string()))
    };
    let chart = |file: &str, title: &str, y: &str, value: &dyn Fn(&EpochMetrics) -> f64| {
        draw(file, title, y, groups.iter().map(|g| Series { name: legend(g), points: mean_curve(g, value) }).collect())
    };
    charts.push(chart("loss.png", "train loss", "loss", &|m| m.train_loss)?);
    let several_heads = groups.iter().any(|g| best_head(g).is_some());
    let title = if several_heads { "test top-1 (%), deployed and best head" } else { "test top-1 (%)" };
    charts.push(draw("top1.png", title, "top-1", top1_series(&groups))?);
    let mut extra_heads: Vec<String> =
        groups.iter().flat_map(|g| g.heads.iter().skip(1).map(|h| h.head.clone())).collect();
    extra_heads.sort();
    extra_heads.dedup();
    for head in &extra_heads {
        let file = format!("top1_{head}.png");
        charts.push(chart(&file, &format!("test top-1 (%), head {head}"), "top-1", &|m| m.acc1_of(head))?);
    }
    charts.push(chart("lr.png", "learning rate", "lr", &|m| m.lr)?);
    for (term, title, y) in MASK_AREA_CHARTS {
        let series: Vec<Series> = groups
            .iter()
            .filter(|g| g.runs.iter().all(|r| r.metrics.iter().all(|m| m.extra.contains_key(term))))
            .map(|g| Series { name: legend(g), points: mean_curve(g, |m| m.extra[term]) })
            .collect();
        if !series.is_empty() {
            charts.push(draw(&format!("{term}.png"), title, y, series)?);
        }
    }
    let table = table(&groups);
    let mut md = String::from("# samix report\n\n");
    let runs: Vec<String> = groups
        .iter()
        .flat_map(|g| {
            g.runs.iter().map(move |r| format!("- `{}` (seed {}) in group {}", r.dir.display(), r.seed, g.name))
        })
        .collect();
    md.push_str(&format!("Runs:\n{}\n\n", runs.join("\n")));
    md.push_str("Top-1 in %; a group (runs differing only by seed) shows mean ± sample standard deviation.\n\n");
    if several_heads {
        md.push_str(
            "The first top-1 chart shows the deployed head (`top-1`) beside the best further head: the one \
             with the highest median of the last N epochs.\n\n",
        );
    }
    md.push_str(&table);
    for (title, file) in &charts {
        md.push_str(&format!("\n![{title}]({file})\n"));
    }
    crate::files::write_atomic(&out.join("report.md"), md.as_bytes())?;
    Ok(table)
}
