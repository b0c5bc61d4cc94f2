//! The `samix` command line: train, eval, mix, data, bench. It parses arguments, calls the
//! library (one function per subcommand in `commands.rs`) and prints; errors from the library are
//! printed as one line and give a non-zero exit code.
mod commands;
mod convert;
mod log_format;
mod signals;

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
    /// Print only warnings, errors and results (no progress, no per-epoch lines).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a classifier from a TOML config (or pre-train, when it has an [ssl] table).
    Train(commands::TrainArgs),
    /// Self-supervised pre-training (MoCo v2, with the config's mixup) from a config with an
    /// [ssl] table; writes the query backbone to <run>/backbone.safetensors.
    Pretrain(commands::TrainArgs),
    /// Linear evaluation of a pre-trained backbone: the backbone of --backbone (a pre-training run
    /// folder or a weights file) frozen, a linear classifier trained with the config's recipe.
    Linear(commands::LinearArgs),
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
    /// Classify image files or folders with a trained checkpoint: top-k classes with names and
    /// probabilities, as CSV (default) or JSON on stdout.
    Predict(commands::PredictArgs),
    /// Time the ResNet-18 CIFAR training step per method (the work of
    /// bench/torch_samix_ref.py), on synthetic data.
    Bench(commands::BenchArgs),
    /// Write a PNG grid of a mixing policy on real images: first images, partners, the partner's
    /// weight per pixel (white = partner), mixed images, and λ under each column.
    Mix(commands::MixArgs),
    /// Convert ResNet/ResNeXt weights between torchvision's or timm's state dicts and samix's
    /// (safetensors both ways): `--from torchvision` for `model.init_from`, `--to torchvision`
    /// to use a samix run's classifier in PyTorch.
    Convert(convert::ConvertArgs),
    /// Runs side by side: charts (train loss, test top-1 per head, learning rate) and a table of
    /// final / best / median-of-last-N top-1; runs differing only by seed as mean ± std.
    Report {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Folder for report.md and the charts.
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
    /// Config utilities.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Dataset utilities.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the fully resolved config — every key, defaults included — as a run would use it.
    /// Online SAMix/AutoMix's sub-tables (mix.mixer, mix.mask_loss, mix.mixer_loss, mix.ema,
    /// mix.mixer_optim) are written out with the values the run resolves them to; the run
    /// directory's config.toml keeps them as given.
    Show {
        #[arg(long)]
        config: PathBuf,
        /// Override a config value: --set optim.lr=0.05 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
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
    std::process::exit(run_from_args(std::env::args_os()));
}

/// The whole command line, from its arguments (program name first) to its exit code: what
/// `main` runs, and what the Python package's `samix` command calls (python/src/cli.rs), so
/// both are one program. Parse errors, `--help` and `--version` print as clap prints them.
pub fn run_from_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    samix::host::keep_freed_memory();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    // `samix train` under a multi-process launch: only rank 0 speaks; the others print
    // warnings and errors.
    let launch = match &cli.command {
        Command::Train(_) | Command::Pretrain(_) | Command::Linear(_) => match samix::dist::Launch::from_env() {
            Ok(launch) => launch,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let rank = launch.as_ref().map(|l| l.rank);
    log_format::init(cli.quiet || rank.is_some_and(|r| r > 0));
    let Err(e) = run(cli, launch) else { return 0 };
    let e = match rank {
        Some(r) => e.context(format!("rank {r}")),
        None => e,
    };
    if let Some(samix::Error::Interrupted { .. }) = e.downcast_ref::<samix::Error>() {
        eprintln!("interrupted: {e:#}");
        return signals::exit_code();
    }
    eprintln!("error: {e:#}");
    1
}

fn run(cli: Cli, launch: Option<samix::dist::Launch>) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let quiet = cli.quiet || launch.as_ref().is_some_and(|l| l.rank > 0);
            commands::train(args, quiet, launch, commands::TrainMode::Any)
        }
        Command::Pretrain(args) => {
            let quiet = cli.quiet || launch.as_ref().is_some_and(|l| l.rank > 0);
            commands::train(args, quiet, launch, commands::TrainMode::Pretrain)
        }
        Command::Linear(args) => {
            let quiet = cli.quiet || launch.as_ref().is_some_and(|l| l.rank > 0);
            commands::train(args.train, quiet, launch, commands::TrainMode::Linear { backbone: args.backbone })
        }
        Command::Eval { checkpoint, data, device } => commands::eval(&checkpoint, data, device.as_deref()),
        Command::Bench(args) => commands::bench(args),
        Command::Predict(args) => commands::predict(args),
        Command::Report { runs, out } => commands::report(&runs, &out),
        Command::Mix(args) => commands::mix(args),
        Command::Convert(args) => convert::convert(args),
        Command::Data { command: DataCommand::Download { name, to, mirrors } } => {
            commands::data_download(name.kind(), to, &mirrors)
        }
        Command::Data { command: DataCommand::Verify { path } } => commands::data_verify(&path),
        Command::Config { command: ConfigCommand::Show { config, set } } => commands::config_show(&config, &set),
    }
}
