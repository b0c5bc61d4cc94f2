//! Throughput of one training step, the same work as bench/torch_samix_ref.py (and
//! bench/torch_moco_ref.py for the self-supervised steps): ResNet-18 (CIFAR stem, 100 classes,
//! 32×32) on a fixed random batch, SGD 0.1/0.9/1e-4, for each method; warm-up steps first, then timed steps, with the device synchronised around the
//! timed region; peak memory per method. Optionally in bf16 autocast and/or as one captured
//! CUDA graph per step. Also the loader alone. Not used in training.
use crate::config::{MixConfig, TrainConfig};
use crate::data::loader::Loader;
use crate::data::open_splits;
use crate::mix::MixPolicy;
use crate::native::{self, CudaGraph, Precision};
use crate::rng::{stream, Stream};
use crate::train::{input_policy, train_loader};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

mod method;
mod steps;
pub use method::{BenchModel, Method};
use steps::build_step;

/// Refuses a `--batch` above [`crate::limits::MAX_BATCH`], or one whose largest feature map of
/// the benchmarked network is above [`crate::limits::MAX_TENSOR_BYTES`] (a batch of 10⁸
/// panicked inside libtorch's allocation).
pub fn check_batch(batch: i64, model: BenchModel) -> Result<()> {
    use crate::limits::{check_size, check_tensor_bytes, MAX_BATCH};
    check_size("--batch", batch, MAX_BATCH)?;
    let bytes = crate::model::size::largest_activation_bytes(&model.config(), model.size() as u64, batch.max(0) as u64);
    check_tensor_bytes("--batch", "one batch of the network's largest feature map", bytes)
}

/// How to run the timed steps.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub device: Device,
    pub batch: i64,
    pub warmup: usize,
    pub steps: usize,
    pub precision: Precision,
    /// Capture one step as a CUDA graph (after the warm-up) and time its replays. The step then
    /// draws λ and pairings on the device ([`MixPolicy::mix_on_device`],
    /// [`OnlineSamix::draw_on_device`]).
    pub cuda_graph: bool,
    /// Convolution weights and the batch in channels-last memory order (the reference's
    /// `--channels-last`).
    pub channels_last: bool,
    /// The network and input size.
    pub model: BenchModel,
}

/// Peak memory while a method was built and timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeakMemory {
    /// Most bytes the CUDA caching allocator held in tensors (torch.cuda.max_memory_allocated),
    /// reset before the method's networks were built.
    DeviceAllocated(i64),
    /// The process's peak resident set size (VmHWM), reset (where Linux allows) before the
    /// method; it includes libtorch itself and any heap earlier methods left behind, so a
    /// per-method figure needs one method per process (bench/cpu.sh does that).
    ProcessRss(u64),
}

impl PeakMemory {
    pub fn mib(self) -> f64 {
        match self {
            PeakMemory::DeviceAllocated(b) => b as f64 / 1048576.0,
            PeakMemory::ProcessRss(b) => b as f64 / 1048576.0,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            PeakMemory::DeviceAllocated(_) => "peak_alloc",
            PeakMemory::ProcessRss(_) => "peak_rss",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub method: Method,
    pub ms_per_step: f64,
    pub images_per_sec: f64,
    pub peak_memory: Option<PeakMemory>,
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn reset_peak_memory(device: Device) -> Result<()> {
    match device {
        Device::Cuda(i) if native::has_cuda_support() => native::reset_cuda_peak(i),
        _ => {
            crate::host::reset_peak_rss();
            Ok(())
        }
    }
}

fn peak_memory(device: Device) -> Result<Option<PeakMemory>> {
    Ok(match device {
        Device::Cuda(i) if native::has_cuda_support() => {
            Some(PeakMemory::DeviceAllocated(native::cuda_memory(i)?.peak_allocated))
        }
        Device::Cuda(_) => None,
        _ => crate::host::peak_rss_bytes().map(PeakMemory::ProcessRss),
    })
}

/// Times `opts.steps` training steps of `method` after `opts.warmup` untimed ones.
pub fn bench_step(method: Method, opts: &BenchOptions) -> Result<BenchResult> {
    check_batch(opts.batch, opts.model)?;
    let device = opts.device;
    if opts.cuda_graph && !device.is_cuda() {
        return Err(Error::Argument(format!("--cuda-graph needs a CUDA device, not {device:?}")));
    }
    crate::host::warn_if_bf16_emulated(opts.precision, device);
    synchronize(device);
    reset_peak_memory(device)?;
    // The SAMix step's EMA momentum follows the schedule of a run as long as the bench (a
    // captured CUDA graph keeps the momentum of its capture).
    let total_steps = (opts.warmup + opts.steps) as u64;
    let (_vs, mut step) = build_step(method, device, opts.batch, opts.channels_last, total_steps, opts.model)?;
    let precision = opts.precision;
    let elapsed = if opts.cuda_graph {
        // Warm-up (on the graph's side stream) creates the gradients and momentum buffers the
        // captured step then updates in place, and runs cuDNN's algorithm search.
        let graph = CudaGraph::capture(device, opts.warmup.max(2), || step.run(precision, true, false))?;
        time_runs(device, opts.steps, || graph.replay())?
    } else {
        for _ in 0..opts.warmup {
            step.run(precision, false, true)?;
        }
        time_runs(device, opts.steps, || step.run(precision, false, true))?
    };
    let ms = elapsed.as_secs_f64() * 1000.0 / opts.steps.max(1) as f64;
    Ok(BenchResult {
        method,
        ms_per_step: ms,
        images_per_sec: opts.batch as f64 * 1000.0 / ms,
        peak_memory: peak_memory(device)?,
    })
}

/// Wall time of `runs` calls of `run`, with the device synchronised before and after.
fn time_runs(device: Device, runs: usize, mut run: impl FnMut() -> Result<()>) -> Result<std::time::Duration> {
    synchronize(device);
    let t = Instant::now();
    for _ in 0..runs {
        run()?;
    }
    synchronize(device);
    Ok(t.elapsed())
}

/// `samix bench --policies`: images per second of each handcrafted policy's `mix` alone on a
/// random batch, by name: every policy that mixes with nothing but its default table (not those
/// needing a checkpoint, the model or a Mixer), then PuzzleMix with a random saliency (the
/// saliency's cost not included).
pub fn bench_policies(device: Device, batch: i64, steps: usize) -> Result<Vec<(String, f64)>> {
    check_batch(batch, BenchModel::CifarResnet18)?;
    let mut out = Vec::new();
    for &name in MixConfig::NAMES.iter().filter(|&&n| n != "none") {
        let policy = match MixConfig::from_name(name, None).and_then(|c| input_policy(&c, device)) {
            Ok(p) => p,
            // Needs a checkpoint (Argument), or the model or a Mixer (mix.policy): not timed here.
            Err(Error::Argument(_)) => continue,
            Err(Error::Config { key, .. }) if key == "mix.policy" || key == "--policy" => continue,
            Err(e) => return Err(e),
        };
        out.push((name.to_string(), bench_policy_mix(&policy, device, batch, steps)));
    }
    let puzzle = crate::mix::PuzzleMix::new(Default::default(), vec![0.5; 3], vec![0.25; 3])?;
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let saliency = Tensor::rand([batch, 32, 32], (Kind::Float, device));
    let mut rng = stream(0, Stream::Mix, 0, 0);
    let iters = (steps / 10).max(1);
    let elapsed = time_runs(device, iters, || {
        let _ = puzzle.mix_with_saliency(&x, &y, &saliency, &mut rng);
        Ok(())
    })?;
    out.push(("puzzlemix (given saliency)".to_string(), (batch as usize * iters) as f64 / elapsed.as_secs_f64()));
    Ok(out)
}

/// Images per second `policy` mixes (its `mix` alone) on a random `batch×3×32×32` batch.
pub fn bench_policy_mix(policy: &dyn MixPolicy, device: Device, batch: i64, iters: usize) -> f64 {
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let mut rng = stream(0, Stream::Mix, 0, 0);
    for _ in 0..3 {
        let _ = policy.mix(&x, &y, &mut rng);
    }
    synchronize(device);
    let t = Instant::now();
    for _ in 0..iters {
        let _ = policy.mix(&x, &y, &mut rng);
    }
    synchronize(device);
    (batch as usize * iters) as f64 / t.elapsed().as_secs_f64()
}

/// What the loader alone delivers over `batches` batches of epoch 0 (after the first, which
/// includes starting the workers), uploaded to the loader's device.
pub struct LoaderThroughput {
    pub batches: usize,
    pub images_per_sec: f64,
    /// Wall time of the counted batches: all of it is the consumer waiting, nothing else runs.
    pub seconds: f64,
}

/// The training loader of the config at `config` (its dataset — or the one at `data` —,
/// augmentations, workers and batch size) timed over `batches` batches uploaded to `device`.
/// Returns the throughput and the config.
pub fn bench_config_loader(
    config: &Path,
    data: Option<PathBuf>,
    device: Device,
    batches: usize,
) -> Result<(LoaderThroughput, TrainConfig)> {
    let mut cfg = TrainConfig::load(config, &[])?;
    if let Some(d) = data {
        cfg.data.path = Some(d);
    }
    let splits = open_splits(&cfg.data)?;
    let loader = train_loader(&cfg, splits.train.clone(), device);
    Ok((bench_loader(&loader, batches)?, cfg))
}

pub fn bench_loader(loader: &Loader, batches: usize) -> Result<LoaderThroughput> {
    let mut epoch = loader.epoch(0);
    let device = match epoch.next().transpose()? {
        Some(first) => first.images.device(),
        None => return Ok(LoaderThroughput { batches: 0, images_per_sec: 0.0, seconds: 0.0 }),
    };
    let (mut images, mut counted) = (0usize, 0usize);
    let elapsed = time_runs(device, 1, || {
        for batch in epoch.by_ref().take(batches) {
            images += batch?.len();
            counted += 1;
        }
        Ok(())
    })?;
    let seconds = elapsed.as_secs_f64();
    Ok(LoaderThroughput { batches: counted, images_per_sec: images as f64 / seconds.max(1e-9), seconds })
}
