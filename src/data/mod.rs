//! Datasets, transforms and the batch loader. Reads files only; never touches the model or device
//! except for uploading finished batches in [`loader`].
pub mod checksum;
pub mod cifar;
pub mod color;
pub mod config;
pub mod dataset;
pub mod download;
pub mod erasing;
pub mod fine_grained;
pub mod folder;
pub mod idx;
pub mod imagenet;
pub mod jpeg;
pub mod loader;
pub mod pil_ops;
pub mod randaug;
pub mod resample;
mod transfer;
pub mod transform;
pub mod verify;

use crate::Result;
pub use config::{AugmentConfig, BadImages, DataConfig, DatasetKind, Interpolation, PaddingMode};
pub use dataset::{
    ClassRange, Dataset, DatasetInfo, Decoded, InMemoryDataset, PixelView, Prefix, RawImage, Split, Splits, Window,
    WindowedImage,
};
use std::sync::Arc;

/// The dataset's path: `data.path` when set; else its place in the data directory, downloading
/// it there first when it is missing (the only case that touches the network).
pub fn resolve_path(cfg: &DataConfig) -> Result<std::path::PathBuf> {
    if let Some(p) = &cfg.path {
        return Ok(p.clone());
    }
    let dir = download::default_data_dir();
    let target = download::dataset_path(&dir, cfg.dataset)
        .ok_or_else(|| crate::Error::config("data.path", "is required for image_folder datasets"))?;
    let source = download::DatasetSource::new(cfg.dataset, None)?;
    // Missing, or a folder without all its files (a download that stopped): fetch what is
    // missing (`fetch` keeps what is there and validates the whole).
    let complete =
        target.exists() && (source.unzip.is_some() || source.files.iter().all(|f| dir.join(&f.name).exists()));
    if !complete {
        tracing::info!("{} not found (or incomplete) in {}; downloading it", cfg.dataset.name(), dir.display());
        let opts = download::DownloadOptions {
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ..Default::default()
        };
        download::fetch(&source, &dir, &opts).map_err(|e| {
            let msg = format!(
                "{e}\n  no network? use a local copy: --data PATH (data.path), or SAMIX_DATA=DIR with `{}` in it",
                target.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            );
            crate::Error::data(&dir, msg)
        })?;
    }
    Ok(target)
}

/// Opens the dataset a config names, validating every file it reads.
pub fn open_splits(cfg: &DataConfig) -> Result<Splits> {
    let path = resolve_path(cfg)?;
    if !path.exists() {
        return Err(crate::Error::data(
            &path,
            "does not exist (data.path; a relative path is read from the current directory, see README \"Datasets\")",
        ));
    }
    fn shared<D: Dataset + 'static>((train, test): (D, D)) -> (Arc<dyn Dataset>, Arc<dyn Dataset>) {
        (Arc::new(train), Arc::new(test))
    }
    let (train, test) = match cfg.dataset {
        DatasetKind::Cifar10 | DatasetKind::Cifar100 => shared(cifar::load(&path, cfg.dataset, cfg.verify_checksums)?),
        DatasetKind::Mnist | DatasetKind::FashionMnist => shared(idx::load(&path, cfg.dataset, cfg.verify_checksums)?),
        DatasetKind::ImageFolder => shared(folder::load_image_folder(&path)?),
        DatasetKind::TinyImagenet => shared(folder::load_tiny_imagenet(&path)?),
        DatasetKind::Cub200 => shared(fine_grained::load_cub200(&path)?),
        DatasetKind::Imagenet => shared(imagenet::load_imagenet(&path)?),
        DatasetKind::Aircraft => shared(fine_grained::load_aircraft(&path)?),
    };
    if let Some([lo, hi]) = cfg.classes {
        if hi > train.info().num_classes {
            let msg = format!("[{lo}, {hi}) is beyond the dataset's {} classes", train.info().num_classes);
            return Err(crate::Error::config("data.classes", msg));
        }
    }
    let limit = |d: Arc<dyn Dataset>, n: Option<usize>| -> Arc<dyn Dataset> {
        let d: Arc<dyn Dataset> = match cfg.classes {
            Some([lo, hi]) => Arc::new(ClassRange::new(d, lo, hi)),
            None => d,
        };
        match n {
            Some(limit) => Arc::new(Prefix::new(d, limit)),
            None => d,
        }
    };
    Ok(Splits { train: limit(train, cfg.train_limit), test: limit(test, cfg.test_limit) })
}
