//! The processes of a run as the training loop sees them: one process alone, whose collectives
//! are identities, or the ranks of a data-parallel group (rank 0's start broadcast to all,
//! BatchNorm statistics broadcast after each step, figures reduced over the ranks, replicas
//! compared bit for bit before each checkpoint, a recipe every rank must share). The loop calls
//! [`Replicas`] the same way in both cases. Touches the learner's variables and the group only.
use super::checkpoint::PartialEpoch;
use super::eval;
use super::learner::Learner;
use super::loss_sums::EpochSums;
use super::resume::{diff_keys, Start};
use super::run_dir::RunLock;
use crate::config::TrainConfig;
use crate::dist::ProcessGroup;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tch::nn::VarStore;
use tch::Tensor;

/// This process alone, or its place in a data-parallel group.
pub(super) struct Replicas {
    group: Option<DataParallel>,
}

impl Replicas {
    /// One process alone without `group`; else a rank of it, holding the learner's BatchNorm
    /// statistics (of `vs`) to broadcast after every step.
    pub(super) fn new(group: Option<Arc<ProcessGroup>>, vs: &VarStore, bucket_bytes: usize) -> Self {
        Replicas { group: group.map(|g| DataParallel::new(g, vs, bucket_bytes)) }
    }

    /// (rank, world size); (0, 1) for one process.
    pub(super) fn rank_and_world(&self) -> (usize, usize) {
        self.group.as_ref().map_or((0, 1), |d| (d.group.rank(), d.group.world_size()))
    }

    /// Whether `flag` holds on any rank.
    pub(super) fn any(&self, flag: bool) -> Result<bool> {
        match &self.group {
            Some(d) => d.group.any(flag),
            None => Ok(flag),
        }
    }

    /// After every step: rank 0's BatchNorm statistics to every rank.
    pub(super) fn after_step(&self) -> Result<()> {
        self.group.as_ref().map_or(Ok(()), DataParallel::sync_statistics)
    }

    /// An epoch's loss sum and image count over the ranks: the mean of the sums, the total of
    /// the images.
    pub(super) fn epoch_loss_and_images(&self, sum: f64, images: f64) -> Result<(f64, f64)> {
        match &self.group {
            Some(d) => {
                let sums = d.group.sum_f64(&[sum, images])?;
                Ok((sums[0] / d.group.world_size() as f64, sums[1]))
            }
            None => Ok((sum, images)),
        }
    }

    /// The smallest of the ranks' values (`None` where a rank has none).
    pub(super) fn earliest(&self, value: Option<usize>) -> Result<Option<usize>> {
        self.group.as_ref().map_or(Ok(value), |d| d.earliest(value))
    }

    /// Every rank's mixing-stream word position, rank 0's first, in decimal.
    pub(super) fn stream_positions(&self, pos: u128) -> Result<Vec<String>> {
        let Some(d) = &self.group else { return Ok(vec![pos.to_string()]) };
        let positions = d.group.all_gather(&stream_pos_tensor(pos))?;
        Ok((0..positions.size()[0])
            .map(|r| {
                let (hi, lo) = (positions.int64_value(&[r, 0]) as u64, positions.int64_value(&[r, 1]) as u64);
                ((u128::from(hi) << 64) | u128::from(lo)).to_string()
            })
            .collect())
    }

    /// A learner's per-epoch sums as every rank resumes them: the ranks' means.
    pub(super) fn epoch_sums(&self, progress: EpochSums) -> Result<EpochSums> {
        match &self.group {
            Some(d) => Ok(EpochSums { sums: d.mean(progress.sums)?, steps: progress.steps }),
            None => Ok(progress),
        }
    }

    /// An evaluation of the whole test split and the learner's epoch figures, from every rank's
    /// shard (image-weighted means of the evaluation, plain means of the figures).
    pub(super) fn reduce_epoch(
        &self,
        ev: eval::Evaluation,
        extra: BTreeMap<String, f64>,
    ) -> Result<(eval::Evaluation, BTreeMap<String, f64>)> {
        match &self.group {
            Some(d) => Ok((d.reduce(ev)?, d.mean(extra)?)),
            None => Ok((ev, extra)),
        }
    }

    /// Before a checkpoint: fails unless every rank holds rank 0's state bit for bit.
    pub(super) fn check(&self, learner: &dyn Learner) -> Result<()> {
        self.group.as_ref().map_or(Ok(()), |d| d.check_replicas(learner))
    }

    /// Waits for every rank (no rank leaves while rank 0 may still be writing).
    pub(super) fn barrier(&self) -> Result<()> {
        self.group.as_ref().map_or(Ok(()), |d| d.group.barrier())
    }

    /// A stopped run's error, returned once every rank is there: a rank that ended first would
    /// make a launcher such as torchrun stop the others, rank 0 perhaps still writing the
    /// checkpoint.
    pub(super) fn stopped(&self, err: Error) -> Error {
        if let Err(e) = self.barrier() {
            tracing::warn!("while stopping, not every process reached the end: {e}");
        }
        err
    }

    /// Joins the ranks at the start of a run: each must train rank 0's recipe (`config` but for
    /// [`PER_PROCESS_KEYS`], and the same `resume`/`stop_after`), every rank learns whether rank
    /// 0 could prepare the run (`prepared`, rank 0's result), then starts from rank 0's state.
    /// For one process, `prepared` as it is.
    pub(super) fn join(
        &self,
        learner: &mut dyn Learner,
        config: &TrainConfig,
        (resume, stop_after): (bool, Option<usize>),
        out: &Path,
        prepared: Result<(Option<RunLock>, Start)>,
    ) -> Result<(Option<RunLock>, Start)> {
        let Some(d) = &self.group else { return prepared };
        learner.set_group(d.group.clone());
        let changed = d.differences_from_main(config, resume, stop_after)?;
        if d.group.any(prepared.is_err() || !changed.is_empty())? && prepared.is_ok() {
            let msg = if changed.is_empty() {
                "another process could not start the run; its output says why".to_string()
            } else {
                format!(
                    "this process's config differs from rank 0's in {}; every process must train the same config",
                    changed.join(", ")
                )
            };
            return Err(Error::run(out, msg));
        }
        let (lock, start) = prepared?;
        learner.optimizer_mut().average_gradients_over(d.group.clone(), d.bucket_bytes);
        let start = d.start_from_main(learner, start)?;
        if d.group.rank() > 0 {
            // libtorch's own generator (dropout) draws differently on each rank, as the mixing
            // streams do; rank 0 keeps a single process's.
            tch::manual_seed(config.seed.wrapping_mul(0x9E37_79B9).wrapping_add(d.group.rank() as u64) as i64);
        }
        Ok((lock, start))
    }
}

/// Keys whose values may differ between the processes of one data-parallel run: where each
/// finds the data, how it loads it, how it logs, and its own threads and patience. Everything
/// else (the batch, the schedule, `dist.bucket_mb`, whose buckets must match) must be rank 0's.
const PER_PROCESS_KEYS: &[&str] = &[
    "data.path",
    "data.workers",
    "data.prefetch",
    "log.tensorboard",
    "log.progress_every_s",
    "dist.timeout_s",
    "train.threads",
];

/// A data-parallel run's side of the loop: the group, and the variables kept equal on every
/// rank by broadcast rather than by construction.
struct DataParallel {
    group: Arc<ProcessGroup>,
    bucket_bytes: usize,
    /// The BatchNorm running statistics of every network of the learner (online, EMA, Mixer),
    /// in name order. Each rank updates them from its own batch; rank 0's are broadcast after
    /// every step, as PyTorch's DDP broadcasts buffers, so that evaluation and checkpoints see
    /// one set. (Parameters, EMA copies and optimiser state need nothing: identical gradients
    /// make them identical.)
    statistics: Vec<Tensor>,
}

impl DataParallel {
    fn new(group: Arc<ProcessGroup>, vs: &VarStore, bucket_bytes: usize) -> Self {
        let vars = vs.variables();
        let mut names: Vec<&String> = vars
            .iter()
            .filter(|(n, t)| !t.requires_grad() && (n.ends_with("running_mean") || n.ends_with("running_var")))
            .map(|(n, _)| n)
            .collect();
        names.sort();
        let statistics = names.into_iter().map(|n| vars[n].shallow_clone()).collect();
        DataParallel { group, bucket_bytes, statistics }
    }

    fn sync_statistics(&self) -> Result<()> {
        if self.statistics.is_empty() {
            return Ok(());
        }
        self.group.broadcast_from_main(&self.statistics, self.bucket_bytes)
    }

    /// Makes every rank start where rank 0 does: its weights, statistics and optimiser state
    /// (restored from a checkpoint, or freshly initialised), and its place in the run.
    fn start_from_main(&self, learner: &mut dyn Learner, start: Start) -> Result<Start> {
        learner.optimizer_mut().materialize_buffers();
        let tensors: Vec<Tensor> = replicated_state(learner).into_iter().map(|(_, t)| t).collect();
        self.group.broadcast_from_main(&tensors, self.bucket_bytes)?;
        let place = StartPlace { epoch: start.epoch, global_step: start.global_step, partial: start.partial };
        let json = serde_json::to_vec(&place).map_err(|e| Error::Argument(format!("run start: {e}")))?;
        let json = self.group.broadcast_bytes(json)?;
        let place: StartPlace =
            serde_json::from_slice(&json).map_err(|e| Error::Argument(format!("run start from rank 0: {e}")))?;
        if let Some(p) = &place.partial {
            learner.restore_epoch_progress(&p.learner)?;
            if p.stream_pos_of(self.group.rank())?.is_none() {
                tracing::warn!(
                    "the checkpoint was written mid-epoch by fewer processes: rank {}'s mixing draws for the rest of epoch {} start afresh",
                    self.group.rank(),
                    place.epoch + 1
                );
            }
        }
        Ok(Start { epoch: place.epoch, global_step: place.global_step, history: start.history, partial: place.partial })
    }

    /// Fails, naming the first variable that differs, unless every rank holds bit for bit the
    /// weights, statistics and optimiser state of rank 0 (whose copies are broadcast and
    /// compared). Run before every checkpoint: replicas that drifted apart would otherwise go
    /// unnoticed, since only rank 0's are saved.
    fn check_replicas(&self, learner: &dyn Learner) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let named = replicated_state(learner);
        let mains: Vec<Tensor> = named.iter().map(|(_, t)| t.copy()).collect();
        self.group.broadcast_from_main(&mains, self.bucket_bytes)?;
        let first_local = named.iter().zip(&mains).position(|((_, t), m)| !t.equal(m));
        // The lowest differing index over the ranks, so that every rank reports the same one.
        match self.earliest(first_local)? {
            None => Ok(()),
            Some(i) => {
                let name = named.get(i).map_or("?", |(n, _)| n.as_str());
                Err(Error::Argument(format!(
                    "data-parallel replicas differ: `{name}` is not rank 0's on every rank (not checkpointed)"
                )))
            }
        }
    }

    /// The evaluation of the whole test split from every rank's shard: each figure is the
    /// image-weighted mean of the ranks' figures.
    fn reduce(&self, ev: eval::Evaluation) -> Result<eval::Evaluation> {
        let n = ev.primary.images as f64;
        let mut values = vec![n, ev.primary.acc1 * n, ev.primary.acc5 * n, ev.primary.loss * n];
        values.extend(ev.heads.values().map(|v| v * n));
        let sums = self.group.sum_f64(&values)?;
        let total = sums[0].max(1.0);
        let primary = eval::EvalResult {
            images: sums[0] as usize,
            acc1: sums[1] / total,
            acc5: sums[2] / total,
            loss: sums[3] / total,
        };
        let heads = ev.heads.keys().zip(&sums[4..]).map(|(k, v)| (k.clone(), v / total)).collect();
        Ok(eval::Evaluation { primary, heads })
    }

    /// The keys in which this process's recipe — `config` but for [`PER_PROCESS_KEYS`], and the
    /// run options every process must share — differs from rank 0's.
    fn differences_from_main(
        &self,
        config: &TrainConfig,
        resume: bool,
        stop_after: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut table = config.table_without(PER_PROCESS_KEYS)?;
        let mut options = toml::Table::new();
        options.insert("resume".into(), toml::Value::Boolean(resume));
        let stop_after = stop_after.map_or_else(|| "none".to_string(), |n| n.to_string());
        options.insert("stop_after".into(), toml::Value::String(stop_after));
        table.insert("train_options".into(), toml::Value::Table(options));
        let mine = toml::Value::Table(table);
        let text = toml::to_string(&mine).map_err(|e| Error::Argument(format!("config: {e}")))?;
        let main = self.group.broadcast_bytes(text.into_bytes())?;
        let main: toml::Value = std::str::from_utf8(&main)
            .ok()
            .and_then(|t| toml::from_str(t).ok())
            .ok_or_else(|| Error::Argument("rank 0's config arrived unreadable".into()))?;
        let mut changed = Vec::new();
        diff_keys("", &main, &mine, &mut changed);
        Ok(changed)
    }

    /// The smallest of the ranks' values (`None` where a rank has none).
    fn earliest(&self, value: Option<usize>) -> Result<Option<usize>> {
        // The maximum of −value, i64::MIN standing for none.
        let negated = Tensor::from_slice(&[value.map_or(i64::MIN, |v| -(v as i64))]);
        self.group.all_reduce_max(&[&negated])?;
        Ok(match negated.int64_value(&[0]) {
            i64::MIN => None,
            v => usize::try_from(-v).ok(),
        })
    }

    /// The mean over the ranks of each figure (the same keys on every rank).
    fn mean(&self, figures: BTreeMap<String, f64>) -> Result<BTreeMap<String, f64>> {
        let values: Vec<f64> = figures.values().copied().collect();
        let sums = self.group.sum_f64(&values)?;
        let world = self.group.world_size() as f64;
        Ok(figures.into_keys().zip(sums).map(|(k, v)| (k, v / world)).collect())
    }
}

/// What data-parallel ranks must hold alike: every variable of the learner (weights, statistics,
/// EMA copies) in name order, then the optimiser's momentum buffers.
fn replicated_state(learner: &dyn Learner) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = learner.var_store().variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(learner.optimizer().state());
    named
}

/// Where a run starts, as rank 0 tells the others.
#[derive(serde::Serialize, serde::Deserialize)]
struct StartPlace {
    epoch: usize,
    global_step: u64,
    partial: Option<PartialEpoch>,
}

/// A mixing stream's word position as two i64 words (high, low) for a collective.
fn stream_pos_tensor(pos: u128) -> Tensor {
    Tensor::from_slice(&[(pos >> 64) as u64 as i64, pos as u64 as i64])
}
