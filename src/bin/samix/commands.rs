//! One function per subcommand: turn the parsed arguments into library calls and print the
//! results. No training, mixing or data logic lives here.
use anyhow::{bail, Context, Result};
use samix::bench::{self, BenchOptions, Method};
use samix::config::{MixConfig, TrainConfig};
use samix::data::{download, verify, DatasetKind};
use samix::device::parse_device;
use samix::dist::{Launch, ProcessGroup};
use samix::native::Precision;
use samix::pictures;
use samix::preview::{self, MixGridRequest};
use samix::train::{self, eval, RunOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Config file (optional with --resume: the run's own config.toml is used).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config value: --set optim.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default: runs/<config file stem>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace an existing run directory.
    #[arg(long)]
    pub force: bool,
    /// cpu, cuda, cuda:N or auto (default: cuda if available).
    #[arg(long)]
    pub device: Option<String>,
    /// Train at most N epochs now, then stop with a checkpoint (continue with --resume).
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Dataset path, overriding data.path.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct LinearArgs {
    /// A pre-training run folder (its backbone.safetensors) or a backbone weights file.
    #[arg(long)]
    pub backbone: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// What `train` is asked to run.
pub enum TrainMode {
    /// Whatever the config says (`samix train`).
    Any,
    /// Self-supervised pre-training: the config must have an [ssl] table.
    Pretrain,
    /// Linear evaluation of this backbone.
    Linear { backbone: PathBuf },
}

/// `samix train` (and `pretrain`, `linear`): the run directory defaults to `runs/<config stem>`;
/// `--resume` without `--config` reads the run's own `config.toml`.
/// `launch`: this process is one rank of a multi-process run (torchrun's or SLURM's variables).
pub fn train(args: TrainArgs, quiet: bool, launch: Option<Launch>, mode: TrainMode) -> Result<()> {
    super::signals::install(launch.as_ref().is_none_or(|l| l.rank == 0));
    let mut device = parse_device(args.device.as_deref())?;
    let out = run_dir_of(&args)?;
    let config = train_config(&args, &out, mode)?;
    let group = match &launch {
        Some(l) => {
            device = l.rank_device(device, args.device.as_deref().is_some_and(|d| d.contains(':')));
            Some(std::sync::Arc::new(ProcessGroup::connect(l, config.dist.timeout())?))
        }
        None => None,
    };
    let main_rank = launch.as_ref().is_none_or(|l| l.rank == 0);
    if !quiet && main_rank {
        match &launch {
            Some(l) => eprintln!(
                "samix: training on {} processes ({:?} here), run directory {}; batch {} = {} per process",
                l.world_size,
                device,
                out.display(),
                config.train.batch_size,
                config.train.batch_size / l.world_size.max(1)
            ),
            None => eprintln!("samix: training on {device:?}, run directory {}", out.display()),
        }
    }
    let progress = match (quiet, std::io::stderr().is_terminal()) {
        (true, _) => train::Progress::Off,
        (false, true) => train::Progress::Bar,
        (false, false) => train::Progress::Lines,
    };
    let opts = RunOptions {
        config,
        out: out.clone(),
        resume: args.resume,
        force: args.force,
        device,
        progress,
        stop_after: args.stop_after,
        stop: Some(&super::signals::STOP),
        group,
    };
    let s = train::run(opts)?;
    if main_rank {
        // Rank 0 reports and writes the run's files.
        report_run(&s, &out)?;
    }
    Ok(())
}

/// The run directory: `--out`, else `runs/<config file stem>`.
fn run_dir_of(args: &TrainArgs) -> Result<PathBuf> {
    Ok(match (&args.out, &args.config) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => match c.file_stem() {
            Some(stem) => PathBuf::from("runs").join(stem),
            None => bail!("{}: cannot name a run directory after this path; pass --out", c.display()),
        },
        (None, None) => bail!("--out is required when no --config is given"),
    })
}

/// The config the command trains: `--config` (or the run's own with `--resume`), `--set` and
/// `--data` applied, checked against the subcommand's `mode`.
fn train_config(args: &TrainArgs, out: &Path, mode: TrainMode) -> Result<TrainConfig> {
    let mut config = match (&args.config, args.resume) {
        (Some(path), _) => TrainConfig::load(path, &args.set)?,
        (None, true) => TrainConfig::load_stored(&out.join("config.toml"), &args.set)
            .with_context(|| format!("--resume without --config reads {}", out.join("config.toml").display()))?,
        (None, false) => bail!("--config is required (or --resume with an existing --out)"),
    };
    if let Some(d) = &args.data {
        config.data.path = Some(d.clone());
    }
    match mode {
        TrainMode::Any => Ok(config),
        TrainMode::Pretrain if config.ssl.is_none() => {
            bail!("samix pretrain needs a config with an [ssl] table (see configs/cifar100_r18_moco.toml)")
        }
        TrainMode::Pretrain => Ok(config),
        TrainMode::Linear { backbone } => Ok(train::ssl_learner::linear_evaluation(config, &backbone)?),
    }
}

/// A finished run's figures, its report (charts) and the files to look at.
fn report_run(s: &samix::train::metrics::Summary, out: &Path) -> Result<()> {
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
    if let (Some(head), Some(median)) = (&s.best_head, s.best_head_median) {
        // What the paper's tables report: the best head's median of the last N epochs.
        println!(
            "best head: {head}, median of last {} = {median:.2}% (the figure the paper's tables report)",
            s.median_of_last
        );
    }
    // The run's own charts, and the files to look at.
    samix::report::write_report(&[out.to_path_buf()], &out.join("report"))?;
    println!(
        "look at: {} (test top-1 per epoch; all charts in report/report.md)",
        out.join("report/top1.png").display()
    );
    let masks = out.join("visuals").join(format!("masks_epoch_{:04}.png", s.epochs));
    if masks.is_file() {
        println!("         {} (the Mixer's masks after the last epoch)", masks.display());
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct PredictArgs {
    /// A checkpoint folder, or a run folder (its latest checkpoint).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (PNG/JPEG, any size) or folders of them.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to list per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// csv or json.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// Where the run's dataset is, if not where its config says (its class names are read).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub device: Option<String>,
}

/// `samix predict`: top-k classes per image, as CSV rows (`path,rank,class,name,probability`)
/// or a JSON array.
pub fn predict(args: PredictArgs) -> Result<()> {
    if !matches!(args.format.as_str(), "csv" | "json") {
        bail!("--format `{}`: expected csv or json", args.format);
    }
    let device = parse_device(args.device.as_deref())?;
    let files = samix::predict::image_files(&args.images)?;
    let predictions = samix::predict::predict(&args.checkpoint, &files, args.top, args.data, device)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&predictions)?);
        return Ok(());
    }
    let quote =
        |s: &str| if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    println!("path,rank,class,name,probability");
    for p in &predictions {
        for (rank, r) in p.top.iter().enumerate() {
            let path = quote(&p.path.display().to_string());
            println!("{path},{},{},{},{:.6}", rank + 1, r.class, quote(&r.name), r.probability);
        }
    }
    Ok(())
}

/// `samix report`: charts and a table of runs side by side.
pub fn report(runs: &[PathBuf], out: &Path) -> Result<()> {
    let table = samix::report::write_report(runs, out)?;
    print!("{table}");
    println!("report: {} (charts beside it)", out.join("report.md").display());
    Ok(())
}

/// `samix config show`: the resolved config as TOML on stdout, SAMix's sub-tables included.
pub fn config_show(path: &Path, set: &[String]) -> Result<()> {
    print!("{}", TrainConfig::load(path, set)?.to_toml_resolved()?);
    Ok(())
}

/// `samix eval`: the deployed classifier of a checkpoint on a test split.
pub fn eval(checkpoint: &Path, data: Option<PathBuf>, device: Option<&str>) -> Result<()> {
    let device = parse_device(device)?;
    let (r, epoch) = eval::evaluate_checkpoint(checkpoint, data, device)?;
    println!("top-1 {:.2}%  top-5 {:.2}%  loss {:.4}  ({} images, epoch {epoch})", r.acc1, r.acc5, r.loss, r.images);
    Ok(())
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long, default_value_t = 100)]
    pub batch: i64,
    /// Methods to time, comma-separated (default: vanilla,mixup,cutmix,samix).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// f32, or bf16 autocast (parameters and optimiser state stay f32).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Capture each step as one CUDA graph and time its replays (CUDA only; λ and pairings
    /// are then drawn on the device).
    #[arg(long)]
    pub cuda_graph: bool,
    /// Convolution weights and the batch in channels-last (NHWC) memory order.
    #[arg(long)]
    pub channels_last: bool,
    /// The network and input: cifar-r18 (ResNet-18, CIFAR stem, 32 px, 100 classes),
    /// imagenet-r50 (ResNet-50, ImageNet stem, 224 px, 1,000 classes), deit-s (DeiT-S, 224 px,
    /// 1,000 classes, the Mixer on block 6) or convnext-t (ConvNeXt-T, 224 px, 1,000 classes).
    #[arg(long, default_value = "cifar-r18")]
    pub model: String,
    /// Time each mixing policy's `mix` alone instead of training steps.
    #[arg(long)]
    pub policies: bool,
    /// Time the training loader of this config alone (its dataset, augmentations, workers
    /// and batch size), uploading to --device; --steps batches after the first.
    #[arg(long, value_name = "CONFIG")]
    pub loader: Option<PathBuf>,
    /// Dataset path for --loader, overriding data.path.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `samix bench`: training steps per method, or the policies alone, or a config's loader alone.
pub fn bench(args: BenchArgs) -> Result<()> {
    let device = parse_device(args.device.as_deref())?;
    samix::device::prepare(device);
    if args.batch < 1 || args.steps < 1 {
        bail!("--batch and --steps must be at least 1");
    }
    let model = bench::BenchModel::from_name(&args.model)?;
    bench::check_batch(args.batch, model)?;
    if let Some(config) = &args.loader {
        let (r, cfg) = bench::bench_config_loader(config, args.data, device, args.steps)?;
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
    if args.policies {
        for (name, ips) in bench::bench_policies(device, args.batch, args.steps)? {
            println!("RESULT samix policy {name} device={device:?} bs={}: {ips:.0} img/s", args.batch);
        }
        return Ok(());
    }
    let precision: Precision = args.precision.parse().map_err(|e: String| anyhow::anyhow!("--precision: {e}"))?;
    let methods = if args.methods.is_empty() {
        Method::ALL.to_vec()
    } else {
        args.methods.iter().map(|m| Method::from_name(m.trim())).collect::<Result<Vec<_>, _>>()?
    };
    let opts = BenchOptions {
        device,
        batch: args.batch,
        warmup: args.warmup,
        steps: args.steps,
        precision,
        cuda_graph: args.cuda_graph,
        channels_last: args.channels_last,
        model,
    };
    bench_steps(&methods, &opts)
}

/// Times each method's training step and prints its line (and its ratio to vanilla, when
/// vanilla ran first).
fn bench_steps(methods: &[Method], opts: &BenchOptions) -> Result<()> {
    let mut vanilla = None;
    for &method in methods {
        let r = bench::bench_step(method, opts)?;
        let memory = r.peak_memory.map(|m| format!(" {}={:.0}MiB", m.label(), m.mib())).unwrap_or_default();
        println!(
            "RESULT samix {} model={} precision={} graph={} cl={} device={:?} bs={}: {:.2} ms/step {:.0} img/s{memory}",
            method.name(),
            opts.model.name(),
            opts.precision.name(),
            opts.cuda_graph,
            opts.channels_last,
            opts.device,
            opts.batch,
            r.ms_per_step,
            r.images_per_sec
        );
        if method == Method::Vanilla {
            vanilla = Some(r.ms_per_step);
        } else if let Some(v) = vanilla {
            println!("RATIO {}/vanilla {:.2}", method.name(), r.ms_per_step / v);
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct MixArgs {
    /// A per-batch policy by its config name (`[mix] policy`), e.g. mixup, cutmix, fmix;
    /// attentivemix, puzzlemix and samix_p with --checkpoint. An unknown name lists them all.
    #[arg(long)]
    pub policy: String,
    /// A dataset archive or folder (its test split is used).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub n: usize,
    /// Only test images of classes LO..HI (HI excluded), e.g. `--classes 50,100`.
    #[arg(long, value_delimiter = ',', value_name = "LO,HI")]
    pub classes: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Beta(α, α) (default: the reference's CIFAR-100 value for the policy).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Side images are resized to, for image folders.
    #[arg(long, default_value_t = 64)]
    pub image_size: usize,
    /// A samix run or checkpoint whose classifier AttentiveMix+ and PuzzleMix consult, or the
    /// SAMix run whose Mixer SAMix-P uses.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// `samix mix`: a PNG grid of a policy on real test images.
pub fn mix(args: MixArgs) -> Result<()> {
    let mix = MixConfig::named(&args.policy, args.alpha, args.checkpoint.as_deref())?;
    let name = mix.name();
    let classes = match args.classes.as_slice() {
        [] => None,
        [lo, hi] => Some([*lo, *hi]),
        _ => bail!("--classes takes two numbers, LO,HI (classes LO..HI, HI excluded)"),
    };
    let req = MixGridRequest {
        mix,
        data: args.data,
        n: args.n,
        classes,
        seed: args.seed,
        image_size: args.image_size,
        out: args.out,
    };
    let mixed = preview::write_mix_grid(&req, args.checkpoint.as_deref())?;
    let lam = pictures::lambdas(&mixed)?;
    let rounded: Vec<f64> = lam.iter().map(|l| (l * 1000.0).round() / 1000.0).collect();
    println!(
        "{}: {name} of {} images; λ (weight of the first image's label) = {rounded:?}",
        req.out.display(),
        lam.len()
    );
    Ok(())
}

/// `samix data download`: the official files into the data directory, verified.
pub fn data_download(kind: DatasetKind, to: Option<PathBuf>, mirrors: &[String]) -> Result<()> {
    let dir = to.unwrap_or_else(download::default_data_dir);
    let source = download::DatasetSource::new(kind, (!mirrors.is_empty()).then_some(mirrors))?;
    let opts = download::DownloadOptions { progress: std::io::stderr().is_terminal(), ..Default::default() };
    match download::fetch(&source, &dir, &opts)? {
        download::Fetched::AlreadyPresent(p) => {
            println!("{}: already present and valid, nothing downloaded", p.display())
        }
        download::Fetched::Downloaded(p) => println!("{}: downloaded and verified", p.display()),
    }
    Ok(())
}

/// `samix data verify`: identify a dataset and check its files against the official md5 sums.
pub fn data_verify(path: &Path) -> Result<()> {
    let report = verify::verify(path)?;
    println!(
        "{}: {} ({} classes, {} train / {} test images)",
        path.display(),
        report.dataset,
        report.num_classes,
        report.train_records,
        report.test_records
    );
    for f in &report.files {
        let status = match (f.matches(), f.expected) {
            (Some(true), _) => "md5 ok".to_string(),
            (Some(false), Some(expected)) => format!("md5 MISMATCH (expected {expected})"),
            (Some(false), None) | (None, _) => "md5 not known".to_string(),
        };
        println!("  {:<28} {:>10} bytes  {}  {status}", f.name, f.bytes, f.md5);
    }
    if !report.all_match() {
        bail!("{}: some files do not match their official checksums", path.display());
    }
    Ok(())
}
