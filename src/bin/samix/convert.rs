//! `samix convert`: ResNet/ResNeXt weights between torchvision's or timm's state dicts and
//! samix's naming. A samix run, checkpoint folder or checkpoint weights file is read as every
//! checkpoint is (its checksums checked), and its deployed classifier exported.
use anyhow::{bail, Context, Result};
use samix::model::{interop, ModelConfig};
use samix::train::{checkpoint, model::Model};
use std::path::{Path, PathBuf};

/// Whose naming a weights file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsFormat {
    Samix,
    Torchvision,
    /// timm's ResNets and ResNeXts name their weights as torchvision's.
    Timm,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    #[arg(long, value_enum)]
    pub from: WeightsFormat,
    #[arg(long, value_enum)]
    pub to: WeightsFormat,
    /// resnet18, resnet34, resnet50, resnet101, resnext50_32x4d (with `--from samix`, a run or
    /// checkpoint names its own).
    #[arg(long)]
    pub arch: Option<String>,
    /// cifar or imagenet (torchvision's and timm's ResNets: imagenet).
    #[arg(long, default_value = "imagenet")]
    pub stem: String,
    /// A safetensors file; with `--from samix` also a run or checkpoint folder (its deployed
    /// classifier: an online SAMix run's EMA network, without its mix head).
    pub input: PathBuf,
    /// The safetensors file to write.
    pub output: PathBuf,
}

/// A `[model]` value named on the command line (`--arch resnet50`), read as the config reads it.
fn config_value<T: serde::de::DeserializeOwned>(flag: &str, value: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| anyhow::anyhow!("{flag} {value}: not one of the accepted values (see samix convert --help)"))
}

/// `samix convert`: checks the weights against the architecture and writes them in the other
/// naming; says what it wrote, and what of a checkpoint it left out.
pub fn convert(args: ConvertArgs) -> Result<()> {
    let stem = config_value("--stem", &args.stem)?;
    let named_config = || -> Result<ModelConfig> {
        let arch = args.arch.as_deref().context("--arch is required for a weights file")?;
        Ok(ModelConfig { stem, ..ModelConfig::new(config_value("--arch", arch)?) })
    };
    let mut left_out = None;
    let weights = match (args.from, args.to) {
        (WeightsFormat::Torchvision | WeightsFormat::Timm, WeightsFormat::Samix) => {
            let w = interop::import_torchvision(&args.input, &named_config()?)?;
            let named = w.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
            interop::save(&args.output, named)?;
            w
        }
        (WeightsFormat::Samix, WeightsFormat::Torchvision | WeightsFormat::Timm) => {
            let w = match checkpoint_input(&args.input) {
                Some(dir) => {
                    let deployed = Model::deployed_weights(dir)?;
                    left_out = Some(deployed.left_out).filter(|l| !l.is_empty());
                    deployed.weights
                }
                None => interop::read_samix(&args.input, &named_config()?)?,
            };
            interop::save(&args.output, interop::export_torchvision(&w))?;
            w
        }
        _ => bail!("--from and --to: one side must be samix, the other torchvision or timm"),
    };
    println!(
        "wrote {} ({} tensors; {} input channels, {} classes)",
        args.output.display(),
        weights.tensors.len(),
        weights.in_channels,
        weights.num_classes
    );
    if let Some(left_out) = left_out {
        println!("left out (no part of the deployed network): {left_out}");
    }
    Ok(())
}

/// The run or checkpoint folder `input` names: a folder, or a checkpoint's weights file.
fn checkpoint_input(input: &Path) -> Option<&Path> {
    if input.is_dir() {
        return Some(input);
    }
    checkpoint::folder_of_model_file(input)
}
