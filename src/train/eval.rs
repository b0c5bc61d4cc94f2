//! Evaluation: top-1 / top-5 accuracy (%) and mean CE over a loader, in eval mode and without
//! gradients. Counts accumulate on the device and are read once at the end.
use super::checkpoint;
use super::loaders::eval_loader;
use super::model::Model;
use crate::config::TrainConfig;
use crate::data::loader::Loader;
use crate::data::open_splits;
use crate::Result;
use std::path::{Path, PathBuf};
use tch::nn::ModuleT;
use tch::Device;
use tch::{Kind, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct EvalResult {
    pub acc1: f64,
    pub acc5: f64,
    pub loss: f64,
    pub images: usize,
}

/// The headline predictor's result and any further heads' accuracies (`acc1_<head>`, ...).
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub primary: EvalResult,
    pub heads: std::collections::BTreeMap<String, f64>,
}

pub fn evaluate(net: &impl ModuleT, loader: &Loader) -> Result<EvalResult> {
    Ok(evaluate_heads(loader, 1, |x| vec![net.forward_t(x, false)])?.remove(0))
}

/// Evaluates `heads` predictors at once: `logits(x)` returns one logits tensor per head.
pub fn evaluate_heads(
    loader: &Loader,
    heads: usize,
    logits: impl Fn(&Tensor) -> Vec<Tensor>,
) -> Result<Vec<EvalResult>> {
    let _guard = tch::no_grad_guard();
    // Per head: [top-1 count, top-5 count, loss sum], accumulated on the device.
    let mut sums: Vec<Option<[Tensor; 3]>> = (0..heads).map(|_| None).collect();
    let mut n = 0usize;
    let mut batches = loader.epoch(0);
    for batch in &mut batches {
        let batch = batch?;
        let labels = batch.labels.unsqueeze(1);
        for (h, z) in logits(&batch.images).into_iter().enumerate().take(heads) {
            let k = z.size()[1].min(5);
            let top = z.topk(k, -1, true, true).1;
            let c1 = top.narrow(1, 0, 1).eq_tensor(&labels).sum(Kind::Int64);
            let c5 = top.eq_tensor(&labels).any_dim(1, false).sum(Kind::Int64);
            let l = z.cross_entropy_loss::<Tensor>(&batch.labels, None, tch::Reduction::Sum, -100, 0.0);
            sums[h] = Some(match sums[h].take() {
                Some([a, b, c]) => [a + c1, b + c5, c + l],
                None => [c1, c5, l],
            });
        }
        n += batch.len();
    }
    crate::data::loader::report_skipped("evaluation", &batches.skipped());
    let denom = n.max(1) as f64;
    Ok(sums
        .into_iter()
        .map(|s| {
            let [a, b, c] = s.map_or([0.0; 3], |t| t.map(|t| t.double_value(&[])));
            EvalResult { acc1: 100.0 * a / denom, acc5: 100.0 * b / denom, loss: c / denom, images: n }
        })
        .collect())
}

/// Evaluates the classifier a checkpoint deploys (a checkpoint folder, or a run folder for its
/// latest) on the test split of its config's dataset, or of the dataset at `data`. Returns the
/// result and the epochs the checkpoint had completed.
pub fn evaluate_checkpoint(path: &Path, data: Option<PathBuf>, device: Device) -> Result<(EvalResult, usize)> {
    let ckpt = checkpoint::open(path)?;
    let mut cfg = TrainConfig::load_stored(&ckpt.config_path(), &[])?;
    if let Some(d) = data {
        cfg.data.path = Some(d);
    }
    cfg.data.train_limit = Some(0);
    let splits = open_splits(&cfg.data)?;
    let model = Model::from_checkpoint(&ckpt, &cfg, splits.test.info(), device)?;
    let loader = eval_loader(&cfg, splits.test, device);
    Ok((evaluate(&model.net, &loader)?, ckpt.state.epoch))
}
