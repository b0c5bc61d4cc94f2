//! Online SAMix inside a plain, hand-written tch training loop: your network (any
//! `samix::StagedNet` — here `TinyNet`, written below with tch's own layers), tch's own SGD, your
//! loop; samix supplies the Mixer, the EMA critic, the draws, the four losses and the step's
//! order. Trains on a slice of Fashion-MNIST and prints the loss terms as they fall.
//!
//!     cargo run --release --example samix_loop -- [FASHION_MNIST_DIR] [STEPS]
//!
//! The folder defaults to `$SAMIX_DATA/fashion-mnist`, else `../shared/datasets/fashion-mnist`.
use anyhow::{Context, Result};
use samix::data::loader::{Loader, LoaderConfig};
use samix::data::transform::Pipeline;
use samix::data::{open_splits, AugmentConfig, DataConfig, DatasetKind};
use samix::native::Precision;
use samix::{OnlineSamix, SamixOptions, SamixPaths, StagedNet, StepPlan, Stream};
use std::path::PathBuf;
use tch::nn::{self, ModuleT, OptimizerConfig, VarStore};
use tch::{Device, Tensor};

/// A small network of our own: a stem and four conv-BN-ReLU stages (28, 14, 7, 4 pixels), global
/// pooling and a linear classifier. All samix needs of it is the stage-by-stage view.
#[derive(Debug)]
struct TinyNet {
    stem: nn::Conv2D,
    stages: Vec<(nn::Conv2D, nn::BatchNorm)>,
    fc: nn::Linear,
    widths: Vec<i64>,
    classes: i64,
}

impl TinyNet {
    fn new(path: &nn::Path, in_channels: i64, classes: i64) -> Self {
        let widths = vec![16, 32, 64, 128];
        let conv = |c: nn::ConvConfig| nn::ConvConfig { padding: 1, bias: false, ..c };
        let stem = nn::conv2d(path / "stem", in_channels, widths[0], 3, conv(Default::default()));
        let mut stages = Vec::new();
        let mut cin = widths[0];
        for (i, &w) in widths.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let p = path / format!("stage{i}");
            let c = nn::conv2d(&p / "conv", cin, w, 3, conv(nn::ConvConfig { stride, ..Default::default() }));
            stages.push((c, nn::batch_norm2d(&p / "bn", w, Default::default())));
            cin = w;
        }
        let fc = nn::linear(path / "fc", cin, classes, Default::default());
        TinyNet { stem, stages, fc, widths, classes }
    }
}

impl ModuleT for TinyNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_stages(x, train, &[]).0
    }
}

impl StagedNet for TinyNet {
    fn num_stages(&self) -> usize {
        self.stages.len()
    }
    fn stem_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.apply(&self.stem)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        let (conv, bn) = &self.stages[i];
        h.apply(conv).apply_t(bn, train).relu()
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.fc)
    }
    fn stage_channels(&self) -> Vec<i64> {
        self.widths.clone()
    }
    fn in_channels(&self) -> i64 {
        1
    }
    fn num_classes(&self) -> i64 {
        self.classes
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = args.get(1).map(PathBuf::from).unwrap_or_else(default_data);
    let steps: usize = args.get(2).map_or(Ok(60), |s| s.parse()).context("STEPS must be a whole number")?;
    let batch = 64;

    // Data: a slice of the real training split, normalised, in shuffled batches.
    let mut cfg = DataConfig::new(DatasetKind::FashionMnist, Some(data));
    (cfg.train_limit, cfg.test_limit) = (Some(steps * batch), Some(0));
    let splits = open_splits(&cfg)?;
    let info = splits.train.info().clone();
    let pipeline = Pipeline::eval(&AugmentConfig::default(), &info.mean, &info.std);
    let lc = LoaderConfig { batch_size: batch, workers: 1, prefetch: 2, shuffle: true, drop_last: true, seed: 0 };
    let loader = Loader::new(splits.train, pipeline, lc, Device::Cpu);

    // Networks: two copies of one backbone (online and EMA) built by us, then samix's parts.
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let paths = SamixPaths::standard(&vs);
    let online = TinyNet::new(&paths.online, 1, 10);
    let ema = TinyNet::new(&paths.ema, 1, 10);
    // The reference's EMA momentum (0.999) suits runs of many thousand steps; over a few dozen the
    // critic would stay at its random start, so this demo lets it follow faster.
    let mut options = SamixOptions::samix();
    (options.ema.momentum, options.ema.end_momentum) = (0.9, 0.99);
    let samix = OnlineSamix::new(&vs, &paths, online, ema, options, 28)?;
    // tch's optimiser; the frozen EMA copy never gets a gradient, so it is left alone.
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.05)?;

    let mut rng = samix::stream(0, Stream::Mix, 0, 0);
    let mut totals = Vec::new();
    for (step, batch) in loader.epoch(0).enumerate() {
        let batch = batch?;
        let draws = samix.draw(batch.len(), &mut rng, Device::Cpu);
        let plan = StepPlan {
            draws: &draws,
            smoothing: 0.0,
            precision: Precision::F32,
            cache_casts: true,
            step: step as u64,
            total_steps: steps as u64,
        };
        // samix computes the losses and updates the EMA critic; the backward pass and the
        // optimiser are ours.
        let l = samix.step(&batch.images, &batch.labels, &plan, |total| {
            opt.backward_step(total);
            Ok(())
        })?;
        let total = l.total();
        let v = |t: &tch::Tensor| t.double_value(&[]);
        totals.push(v(&total));
        if step % 10 == 0 || step + 1 == steps {
            println!(
                "step {step:>3}  total {:.3}  one_q {:.3}  mix_q {:.3}  mix_k {:.3}  mask {:.4}",
                v(&total),
                v(&l.one_q),
                v(&l.mix_q),
                v(&l.mix_k),
                v(&l.mask)
            );
        }
    }
    let k = (totals.len() / 4).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let (first, last) = (mean(&totals[..k]), mean(&totals[totals.len() - k..]));
    println!("mean total loss: first {k} steps {first:.3}, last {k} steps {last:.3}");
    anyhow::ensure!(last < first, "the SAMix loss did not fall ({first:.3} -> {last:.3})");
    Ok(())
}

fn default_data() -> PathBuf {
    match std::env::var_os("SAMIX_DATA") {
        Some(dir) => PathBuf::from(dir).join("fashion-mnist"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/fashion-mnist"),
    }
}
