//! Per-epoch metrics (`metrics.jsonl`, one JSON object per line) and the run summary.
use crate::files::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_acc1: f64,
    pub test_acc5: f64,
    pub lr: f64,
    pub images_per_sec: f64,
    /// Seconds the training loop spent blocked on the loader this epoch.
    pub loader_wait_s: f64,
    pub epoch_time_s: f64,
    /// Loss components and per-head accuracies of learners that have them (SAMix).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub epochs: usize,
    pub final_acc1: f64,
    pub final_acc5: f64,
    pub best_acc1: f64,
    pub best_epoch: usize,
    /// The reference's headline statistic: median top-1 over the last `median_of_last` epochs.
    pub median_acc1: f64,
    pub median_of_last: usize,
    pub mean_images_per_sec: f64,
    pub total_loader_wait_s: f64,
    pub total_time_s: f64,
    pub device: String,
    pub seed: u64,
    /// Runs with several heads (online SAMix: `one_k`, `mix_k`, `one_q`, `mix_q`): each head's
    /// median top-1 over the last `median_of_last` epochs (the reference's summary script
    /// computes these per head).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub median_by_head: BTreeMap<String, f64>,
    /// The head with the highest of those medians and its value: the figure the reference reports
    /// and the paper's tables compare (absent for single-head runs, where it is `median_acc1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_head_median: Option<f64>,
    /// What the reference's summary script (openmixup tools/summary/find_automix_val_median.py)
    /// would print for this run with `median_of_last` as its record count: it keeps the last
    /// `k + 2` epochs (`k + 1` for `k` below 10) and reports the higher of the medians over the
    /// first `len − 1` and over all of them, best head first. A touch more optimistic than
    /// `best_head_median`/`median_acc1`; for comparing with published tables, not a samix figure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_script_median: Option<f64>,
}

/// The key under which a further head's top-1 is kept in [`EpochMetrics::extra`].
pub fn head_key(head: &str) -> String {
    format!("acc1_{head}")
}

impl EpochMetrics {
    /// Each further head's top-1 (those of [`head_key`] in `extra`), by head name.
    pub fn head_acc1(&self) -> impl Iterator<Item = (&str, f64)> {
        self.extra.iter().filter_map(|(k, v)| k.strip_prefix("acc1_").map(|head| (head, *v)))
    }

    /// One further head's top-1 (NaN when this epoch has no such head).
    pub fn acc1_of(&self, head: &str) -> f64 {
        self.extra.get(&head_key(head)).copied().unwrap_or(f64::NAN)
    }
}

/// Median of the last `k` values (mean of the two middle ones for an even count).
pub fn median_of_last(values: &[f64], k: usize) -> f64 {
    let mut tail: Vec<f64> = values[values.len().saturating_sub(k)..].to_vec();
    if tail.is_empty() {
        return f64::NAN;
    }
    tail.sort_by(|a, b| a.total_cmp(b));
    let m = tail.len() / 2;
    if tail.len() % 2 == 1 {
        tail[m]
    } else {
        (tail[m - 1] + tail[m]) / 2.0
    }
}

pub fn summarize(history: &[EpochMetrics], k: usize, total_time_s: f64, device: String, seed: u64) -> Summary {
    let acc: Vec<f64> = history.iter().map(|m| m.test_acc1).collect();
    let (best_epoch, best_acc1) = history
        .iter()
        .map(|m| (m.epoch, m.test_acc1))
        .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
    let last = history.last();
    let mut median_by_head = BTreeMap::new();
    if let Some(first) = history.first() {
        for (head, _) in first.head_acc1() {
            let values: Vec<f64> = history.iter().map(|m| m.acc1_of(head)).collect();
            median_by_head.insert(head.to_string(), median_of_last(&values, k));
        }
    }
    let best = median_by_head.iter().filter(|(_, v)| v.is_finite()).max_by(|a, b| a.1.total_cmp(b.1));
    let (best_head, best_head_median) = (best.map(|(h, _)| h.clone()), best.map(|(_, v)| *v));
    let reference_script_median = reference_script_median(history, k);
    Summary {
        epochs: history.len(),
        final_acc1: last.map_or(f64::NAN, |m| m.test_acc1),
        final_acc5: last.map_or(f64::NAN, |m| m.test_acc5),
        best_acc1,
        best_epoch,
        median_acc1: median_of_last(&acc, k),
        median_of_last: k,
        mean_images_per_sec: history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len().max(1) as f64,
        total_loader_wait_s: history.iter().map(|m| m.loader_wait_s).sum(),
        total_time_s,
        device,
        seed,
        median_by_head,
        best_head,
        best_head_median,
        reference_script_median,
    }
}

/// [`Summary::reference_script_median`]: over each head (the deployed top-1 alone for a
/// one-head run), the median of the first `len − 1` and of all the last `k + 2` records (`k + 1`
/// below 10), the highest of these. None without records.
fn reference_script_median(history: &[EpochMetrics], k: usize) -> Option<f64> {
    let records = k + 1 + usize::from(k >= 10);
    let tail = &history[history.len().saturating_sub(records)..];
    let heads: Vec<Vec<f64>> = match tail.first().map(|m| m.head_acc1().count()).unwrap_or(0) {
        0 => vec![tail.iter().map(|m| m.test_acc1).collect()],
        _ => tail[0].head_acc1().map(|(h, _)| tail.iter().map(|m| m.acc1_of(h)).collect()).collect(),
    };
    let prefixes = [tail.len().saturating_sub(1), tail.len()];
    let medians = heads.iter().flat_map(|v| prefixes.iter().map(move |&i| median_of_last(&v[..i], i)));
    medians.filter(|m| m.is_finite()).max_by(f64::total_cmp)
}

/// Reads `metrics.jsonl` (empty when it does not exist); a line that does not parse is an error
/// naming it.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    read_metrics_with(path, false)
}

/// As [`read_metrics`], except that a last line cut off mid-write (a crash or a full disk during
/// an append: no final newline, and it does not parse) is dropped with a warning instead of
/// failing; the caller rewrites the log.
pub fn read_metrics_repairing(path: &Path) -> Result<Vec<EpochMetrics>> {
    read_metrics_with(path, true)
}

fn read_metrics_with(path: &Path, repair_torn_tail: bool) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let torn = repair_torn_tail && !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(m) => out.push(m),
            Err(_) if torn && i + 1 == lines.len() => {
                tracing::warn!("{}: dropping the cut-off last line {}", path.display(), i + 1);
            }
            Err(e) => return Err(Error::data(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}

/// Rewrites the whole log atomically (used on resume to drop epochs after the checkpoint).
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text += &serde_json::to_string(m).map_err(|e| Error::serialize(path, e))?;
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

pub fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
    let line = serde_json::to_string(m).map_err(|e| Error::serialize(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}
