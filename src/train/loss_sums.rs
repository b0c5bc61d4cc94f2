//! A learner's running per-epoch loss sums: kept on the device while the epoch runs (no sync per
//! step), turned into the metrics line's means at its end, and saved into / restored from a
//! mid-epoch checkpoint as [`EpochSums`]. Touches tensors only; the checkpoint writes them.
use serde::{Deserialize, Serialize};

/// Per-epoch sums a learner keeps for its metrics line, and the steps they cover.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    pub sums: std::collections::BTreeMap<String, f64>,
    pub steps: usize,
}

/// The running per-epoch sums of a learner's named loss terms, kept on the device (no sync per
/// step), with what a checkpoint stores of them and the epoch's means for `metrics.jsonl`.
#[derive(Debug)]
pub struct LossSums {
    /// The terms a checkpoint may name (anything else in a checkpoint is an error).
    terms: Vec<&'static str>,
    sums: std::collections::BTreeMap<&'static str, tch::Tensor>,
    steps: usize,
}

impl LossSums {
    /// Sums of the terms of `groups` (a learner's loss terms, and further statistics of its steps).
    pub fn new(groups: &[&'static [&'static str]]) -> Self {
        LossSums { terms: groups.concat(), sums: Default::default(), steps: 0 }
    }

    /// Adds one step's terms (detached).
    pub fn add<'a>(&mut self, terms: impl IntoIterator<Item = (&'static str, &'a tch::Tensor)>) {
        for (name, t) in terms {
            let v = t.detach();
            let entry = self.sums.entry(name).or_insert_with(|| v.zeros_like());
            *entry += v;
        }
        self.steps += 1;
    }

    /// The sums so far, for a checkpoint taken mid-epoch.
    pub fn progress(&self) -> EpochSums {
        let sums = self.sums.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]))).collect();
        EpochSums { sums, steps: self.steps }
    }

    /// Restores what [`LossSums::progress`] returned, onto `device`; `what` names the learner in
    /// the error for a term it does not have.
    pub fn restore(&mut self, progress: &EpochSums, device: tch::Device, what: &str) -> crate::Result<()> {
        self.sums.clear();
        for (name, &value) in &progress.sums {
            let Some(&term) = self.terms.iter().find(|t| *t == name) else {
                return Err(crate::Error::Argument(format!("checkpoint state: unknown {what} loss term `{name}`")));
            };
            self.sums.insert(term, tch::Tensor::from(value as f32).to_device(device));
        }
        self.steps = progress.steps;
        Ok(())
    }

    /// The epoch's mean of each term; starts the next epoch.
    pub fn take_means(&mut self) -> std::collections::BTreeMap<String, f64> {
        let n = self.steps.max(1) as f64;
        let out = self.sums.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]) / n)).collect();
        self.sums.clear();
        self.steps = 0;
        out
    }
}
