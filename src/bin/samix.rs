//! The `samix` command line: train, eval, data verify, bench. Errors from the library are printed
//! as one line and give a non-zero exit code.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use samix::config::TrainConfig;
use samix::config::DatasetKind;
use samix::data::{download, open_splits, verify};
use samix::device::parse_device;
use samix::train::{self, checkpoint, eval, Model, RunOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "samix", version, about = "Mixup-augmented training of image classifiers (SAMix and handcrafted policies)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a classifier from a TOML config.
    Train {
        /// Config file (optional with --resume: the run's own config.toml is used).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config value: --set optim.lr=0.05 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run directory (default: runs/<config file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Replace an existing run directory.
        #[arg(long)]
        force: bool,
        /// cpu, cuda, cuda:N or auto (default: cuda if available).
        #[arg(long)]
        device: Option<String>,
        /// Train at most N epochs now, then stop with a checkpoint (continue with --resume).
        #[arg(long, value_name = "N")]
        stop_after: Option<usize>,
        /// Dataset path, overriding data.path.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Evaluate a checkpoint (folder, or a run folder for its latest) on a dataset's test split.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Dataset path (default: the one in the checkpoint's config).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        device: Option<String>,
    },
    /// Time the ResNet-18 CIFAR training step per method (the work of
    /// ../shared/bench/torch_samix_ref.py), on synthetic data.
    Bench {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 40)]
        steps: usize,
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        #[arg(long, default_value_t = 100)]
        batch: i64,
        /// Methods to time, comma-separated (default: vanilla,mixup,cutmix,samix).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// f32, or bf16 autocast (parameters and optimiser state stay f32).
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Capture each step as one CUDA graph and time its replays (CUDA only; λ and pairings
        /// are then drawn on the device).
        #[arg(long)]
        cuda_graph: bool,
        /// Convolution weights and the batch in channels-last (NHWC) memory order.
        #[arg(long)]
        channels_last: bool,
        /// Time each mixing policy's `mix` alone instead of training steps.
        #[arg(long)]
        policies: bool,
        /// Time the training loader of this config alone (its dataset, augmentations, workers
        /// and batch size), uploading to --device; --steps batches after the first.
        #[arg(long, value_name = "CONFIG")]
        loader: Option<PathBuf>,
        /// Dataset path for --loader, overriding data.path.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Write a PNG grid of a mixing policy on real images: first images, partners, the partner's
    /// weight per pixel (white = partner), mixed images, and λ under each column.
    Mix {
        /// none, mixup, cutmix, resizemix, gridmix, smoothmix, fmix, saliencymix.
        #[arg(long)]
        policy: String,
        /// A dataset archive or folder (its test split is used).
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 16)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Beta(α, α) (default: the reference's CIFAR-100 value for the policy).
        #[arg(long)]
        alpha: Option<f64>,
        /// Side images are resized to, for image folders.
        #[arg(long, default_value_t = 64)]
        image_size: usize,
        /// A samix run or checkpoint whose classifier AttentiveMix+ and PuzzleMix consult.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Dataset utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Identify and validate a dataset archive or folder (sizes, records, labels, md5).
    Verify { path: PathBuf },
    /// Download a dataset's official files into the data directory and verify them.
    Download {
        name: DownloadName,
        /// Data directory (default: $SAMIX_DATA, else ~/.cache/samix/data).
        #[arg(long)]
        to: Option<PathBuf>,
        /// Mirror base URLs to use instead of the official ones (repeatable).
        #[arg(long = "mirror", value_name = "URL")]
        mirrors: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DownloadName {
    Cifar10,
    Cifar100,
    Mnist,
    #[value(alias = "fashion_mnist")]
    FashionMnist,
    #[value(alias = "tiny_imagenet")]
    TinyImagenet,
}

impl DownloadName {
    fn kind(self) -> DatasetKind {
        match self {
            DownloadName::Cifar10 => DatasetKind::Cifar10,
            DownloadName::Cifar100 => DatasetKind::Cifar100,
            DownloadName::Mnist => DatasetKind::Mnist,
            DownloadName::FashionMnist => DatasetKind::FashionMnist,
            DownloadName::TinyImagenet => DatasetKind::TinyImagenet,
        }
    }
}

fn mix_name(m: &samix::config::MixConfig) -> String {
    toml::to_string(m).ok().and_then(|t| t.lines().next().map(|l| l.replace("policy = ", "").replace('"', ""))).unwrap_or_default()
}

fn main() {
    samix::host::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SAMIX_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { config, set, out, resume, force, device, stop_after, data } => {
            let device = parse_device(device.as_deref())?;
            let out = match (&out, &config) {
                (Some(o), _) => o.clone(),
                (None, Some(c)) => PathBuf::from("runs").join(c.file_stem().unwrap_or_default()),
                (None, None) => bail!("--out is required when no --config is given"),
            };
            let mut config = match (&config, resume) {
                (Some(path), _) => TrainConfig::load(path, &set)?,
                (None, true) => TrainConfig::load(&out.join("config.toml"), &set)
                    .with_context(|| format!("--resume without --config reads {}", out.join("config.toml").display()))?,
                (None, false) => bail!("--config is required (or --resume with an existing --out)"),
            };
            if let Some(d) = data {
                config.data.path = Some(d);
            }
            eprintln!("samix: training on {device:?}, run directory {}", out.display());
            let progress = std::io::stderr().is_terminal();
            let s = train::run(RunOptions { config, out: out.clone(), resume, force, device, progress, stop_after })?;
            println!(
                "done: {} epochs, final top-1 {:.2}%, best {:.2}% (epoch {}), median of last {} = {:.2}%, {:.0} img/s; summary in {}",
                s.epochs,
                s.final_acc1,
                s.best_acc1,
                s.best_epoch,
                s.median_of_last,
                s.median_acc1,
                s.mean_images_per_sec,
                out.join("summary.json").display()
            );
        }
        Command::Eval { checkpoint: path, data, device } => {
            let device = parse_device(device.as_deref())?;
            let ckpt = checkpoint::open(&path)?;
            let mut cfg = TrainConfig::load(&ckpt.config_path(), &[])?;
            if let Some(d) = data {
                cfg.data.path = Some(d);
            }
            cfg.data.train_limit = Some(0);
            let splits = open_splits(&cfg.data)?;
            let model = Model::from_checkpoint(&ckpt, &cfg, splits.test.info(), device)?;
            let loader = train::eval_loader(&cfg, splits.test, device);
            let r = eval::evaluate(&model.net, &loader)?;
            println!("top-1 {:.2}%  top-5 {:.2}%  loss {:.4}  ({} images, epoch {})", r.acc1, r.acc5, r.loss, r.images, ckpt.state.epoch);
        }
        Command::Bench { device, steps, warmup, batch, methods, precision, cuda_graph, channels_last, policies, loader, data } => {
            let device = parse_device(device.as_deref())?;
            samix::device::prepare(device);
            if batch < 1 || steps < 1 {
                bail!("--batch and --steps must be at least 1");
            }
            if let Some(config) = loader {
                let mut cfg = TrainConfig::load(&config, &[])?;
                if let Some(d) = data {
                    cfg.data.path = Some(d);
                }
                let splits = open_splits(&cfg.data)?;
                let loader = train::train_loader(&cfg, splits.train.clone(), device);
                let r = samix::bench::bench_loader(&loader, steps)?;
                println!(
                    "RESULT samix loader {} workers={} bs={} device={device:?}: {:.0} img/s over {} batches ({:.2} s)",
                    cfg.data.dataset.name(),
                    cfg.data.workers,
                    cfg.train.batch_size,
                    r.images_per_sec,
                    r.batches,
                    r.seconds
                );
                return Ok(());
            }
            if policies {
                bench_policies(device, batch, steps)?;
                return Ok(());
            }
            let precision: samix::native::Precision = precision.parse().map_err(|e: String| anyhow::anyhow!("--precision: {e}"))?;
            let methods = if methods.is_empty() {
                samix::bench::Method::ALL.to_vec()
            } else {
                methods.iter().map(|m| samix::bench::Method::from_name(m.trim())).collect::<Result<Vec<_>, _>>()?
            };
            let opts = samix::bench::BenchOptions { device, batch, warmup, steps, precision, cuda_graph, channels_last };
            let mut vanilla = None;
            for method in methods {
                let r = samix::bench::bench_step(method, &opts)?;
                let memory = r.peak_memory.map(|m| format!(" {}={:.0}MiB", m.label(), m.mib())).unwrap_or_default();
                println!(
                    "RESULT samix {} precision={} graph={} cl={} device={device:?} bs={batch}: {:.2} ms/step {:.0} img/s{memory}",
                    method.name(),
                    precision.name(),
                    cuda_graph,
                    channels_last,
                    r.ms_per_step,
                    r.images_per_sec
                );
                if method == samix::bench::Method::Vanilla {
                    vanilla = Some(r.ms_per_step);
                } else if let Some(v) = vanilla {
                    println!("RATIO {}/vanilla {:.2}", method.name(), r.ms_per_step / v);
                }
            }
        }
        Command::Mix { policy, data, out, n, seed, alpha, image_size, checkpoint } => {
            if n == 0 {
                bail!("--n must be at least 1");
            }
            let needs_model = matches!(policy.as_str(), "attentivemix" | "puzzlemix");
            let checkpoint = match (needs_model, checkpoint) {
                (true, None) => bail!("--policy {policy} consults a trained classifier: pass --checkpoint RUN_DIR"),
                (_, c) => c,
            };
            let mix = match (policy.as_str(), &checkpoint) {
                ("attentivemix", Some(c)) => samix::config::MixConfig::Attentivemix { alpha: alpha.unwrap_or(2.0), checkpoint: c.clone(), upsample_to: None },
                ("puzzlemix", _) => samix::config::MixConfig::Puzzlemix(samix::mix::PuzzleMixConfig { alpha: alpha.unwrap_or(1.0), ..Default::default() }),
                _ => samix::config::MixConfig::from_name(&policy, alpha)?,
            };
            let kind = verify::detect(&data)?;
            let mut augment = samix::config::AugmentConfig::default();
            if kind.native_size().is_none() {
                augment.image_size = Some(image_size);
            }
            let dc = samix::config::DataConfig {
                dataset: kind,
                path: Some(data.clone()),
                train_limit: Some(0),
                test_limit: Some(n),
                verify_checksums: false,
                workers: 1,
                prefetch: 1,
                augment: augment.clone(),
            };
            let splits = open_splits(&dc)?;
            let info = splits.test.info().clone();
            let pipeline = samix::data::transform::Pipeline::eval(&augment, &info.mean, &info.std);
            let lc = samix::data::loader::LoaderConfig { batch_size: n, workers: 1, prefetch: 1, shuffle: false, drop_last: false, seed };
            let loader = samix::data::loader::Loader::new(splits.test, pipeline, lc, tch::Device::Cpu);
            let batch = loader.epoch(0).next().ok_or_else(|| anyhow::anyhow!("{}: no test images", data.display()))??;
            let mut rng = samix::rng::stream(seed, samix::rng::Stream::Visual, 0, 0);
            let mixed = if let samix::config::MixConfig::Puzzlemix(p) = &mix {
                let dir = checkpoint.as_deref().unwrap_or(Path::new("."));
                let (_vs, net) = samix::train::Model::load_frozen(dir, tch::Device::Cpu)?;
                let saliency = samix::train::input_saliency(&net, &batch.images, &batch.labels);
                let puzzle = samix::mix::PuzzleMix::new(p.clone(), info.mean.clone(), info.std.clone())?;
                let out_batch = puzzle.mix_with_saliency(&batch.images, &batch.labels, &saliency, &mut rng);
                samix::report::mixed_grid(out_batch, &batch.images, &info.mean, &info.std, &out)?
            } else {
                let policy = samix::mix::Policy::from_config(&mix)?;
                samix::report::policy_grid(&policy, &batch.images, &batch.labels, &info.mean, &info.std, &mut rng, &out)?
            };
            let lam = Vec::<f64>::try_from(&mixed.targets.lam.to_kind(tch::Kind::Double)).unwrap_or_default();
            println!("{}: {} of {} images; λ (weight of the first image's label) = {:?}", out.display(), mix_name(&mix), lam.len(), lam.iter().map(|l| (l * 1000.0).round() / 1000.0).collect::<Vec<_>>());
        }
        Command::Data { command: DataCommand::Download { name, to, mirrors } } => {
            let dir = to.unwrap_or_else(download::default_data_dir);
            let source = download::DatasetSource::new(name.kind(), (!mirrors.is_empty()).then_some(&mirrors[..]))?;
            let opts = download::DownloadOptions { progress: std::io::stderr().is_terminal(), ..Default::default() };
            match download::fetch(&source, &dir, &opts)? {
                download::Fetched::AlreadyPresent(p) => println!("{}: already present and valid, nothing downloaded", p.display()),
                download::Fetched::Downloaded(p) => println!("{}: downloaded and verified", p.display()),
            }
        }
        Command::Data { command: DataCommand::Verify { path } } => {
            let report = verify::verify(&path)?;
            println!("{}: {} ({} classes, {} train / {} test images)", path.display(), report.dataset, report.num_classes, report.train_records, report.test_records);
            for f in &report.files {
                let status = match f.matches() {
                    Some(true) => "md5 ok".to_string(),
                    Some(false) => format!("md5 MISMATCH (expected {})", f.expected.unwrap_or_default()),
                    None => "md5 not known".to_string(),
                };
                println!("  {:<28} {:>10} bytes  {}  {status}", f.name, f.bytes, f.md5);
            }
            if !report.all_match() {
                bail!("{}: some files do not match their official checksums", path.display());
            }
        }
    }
    Ok(())
}

/// `samix bench --policies`: each policy's `mix` alone on a random batch.
fn bench_policies(device: tch::Device, batch: i64, steps: usize) -> Result<()> {
    for name in ["mixup", "cutmix", "resizemix", "gridmix", "smoothmix", "fmix", "saliencymix", "mixup_cutmix"] {
        let p = samix::mix::Policy::from_config(&samix::config::MixConfig::from_name(name, None)?)?;
        let ips = samix::bench::bench_policy_mix(&p, device, batch, steps);
        println!("RESULT samix policy {name} device={device:?} bs={batch}: {ips:.0} img/s");
    }
    // PuzzleMix needs the model's saliency; here a random one (its cost is not included).
    let puzzle = samix::mix::PuzzleMix::new(Default::default(), vec![0.5; 3], vec![0.25; 3])?;
    let x = tch::Tensor::randn([batch, 3, 32, 32], (tch::Kind::Float, device));
    let y = tch::Tensor::randint(100, [batch], (tch::Kind::Int64, device));
    let sal = tch::Tensor::rand([batch, 32, 32], (tch::Kind::Float, device));
    let mut rng = samix::rng::stream(0, samix::rng::Stream::Mix, 0, 0);
    let iters = (steps / 10).max(1);
    let t = std::time::Instant::now();
    for _ in 0..iters {
        let _ = puzzle.mix_with_saliency(&x, &y, &sal, &mut rng);
    }
    println!("RESULT samix policy puzzlemix (given saliency) device={device:?} bs={batch}: {:.0} img/s", (batch as usize * iters) as f64 / t.elapsed().as_secs_f64());
    Ok(())
}
