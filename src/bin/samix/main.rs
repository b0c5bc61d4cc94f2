//! The `samix` command line: train, eval, mix, data, bench. It parses arguments, calls the
//! library (one function per subcommand in `commands.rs`) and prints; errors from the library are
//! printed as one line and give a non-zero exit code.
mod commands;
mod log_format;

use clap::{Parser, Subcommand};
use samix::data::DatasetKind;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "samix",
    version,
    about = "Mixup-augmented training of image classifiers (SAMix and handcrafted policies)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// none, mixup, cutmix, resizemix, gridmix, smoothmix, fmix, saliencymix, mixup_cutmix,
        /// attentivemix, puzzlemix (the last two with --checkpoint).
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
pub(crate) enum DataCommand {
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
pub(crate) enum DownloadName {
    Cifar10,
    Cifar100,
    Mnist,
    #[value(alias = "fashion_mnist")]
    FashionMnist,
    #[value(alias = "tiny_imagenet")]
    TinyImagenet,
}

impl DownloadName {
    pub(crate) fn kind(self) -> DatasetKind {
        match self {
            DownloadName::Cifar10 => DatasetKind::Cifar10,
            DownloadName::Cifar100 => DatasetKind::Cifar100,
            DownloadName::Mnist => DatasetKind::Mnist,
            DownloadName::FashionMnist => DatasetKind::FashionMnist,
            DownloadName::TinyImagenet => DatasetKind::TinyImagenet,
        }
    }
}

fn main() {
    samix::host::keep_freed_memory();
    log_format::init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train { config, set, out, resume, force, device, stop_after, data } => {
            commands::train(commands::TrainArgs { config, set, out, resume, force, device, stop_after, data })
        }
        Command::Eval { checkpoint, data, device } => commands::eval(&checkpoint, data, device.as_deref()),
        Command::Bench {
            device,
            steps,
            warmup,
            batch,
            methods,
            precision,
            cuda_graph,
            channels_last,
            policies,
            loader,
            data,
        } => commands::bench(commands::BenchArgs {
            device,
            steps,
            warmup,
            batch,
            methods,
            precision,
            cuda_graph,
            channels_last,
            policies,
            loader,
            data,
        }),
        Command::Mix { policy, data, out, n, seed, alpha, image_size, checkpoint } => {
            commands::mix(commands::MixArgs { policy, data, out, n, seed, alpha, image_size, checkpoint })
        }
        Command::Data { command: DataCommand::Download { name, to, mirrors } } => {
            commands::data_download(name.kind(), to, &mirrors)
        }
        Command::Data { command: DataCommand::Verify { path } } => commands::data_verify(&path),
    }
}
