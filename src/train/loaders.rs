//! The loaders of a run: training (shuffled, last partial batch dropped, the config's
//! augmentations) and evaluation (in order, every image, resize and centre crop only).
use crate::config::TrainConfig;
use crate::data::loader::{Loader, LoaderConfig};
use crate::data::transform::Pipeline;
use crate::data::{Dataset, DatasetInfo};
use std::sync::Arc;
use tch::Device;

pub fn train_pipeline(cfg: &TrainConfig, info: &DatasetInfo) -> Pipeline {
    Pipeline::train(&cfg.data.augment, cfg.data.dataset.native_size(), &info.mean, &info.std)
}

/// The training loader of a config: shuffled, last partial batch dropped, its augmentations;
/// two views of every image for self-supervised pre-training.
pub fn train_loader(cfg: &TrainConfig, train: Arc<dyn Dataset>, device: Device) -> Loader {
    let info = train.info().clone();
    let lc = LoaderConfig {
        batch_size: cfg.train.batch_size,
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        shuffle: true,
        drop_last: true,
        seed: cfg.seed,
    };
    let views = if cfg.ssl.is_some() { 2 } else { 1 };
    Loader::new(train, train_pipeline(cfg, &info), lc, device).with_views(views).with_bad_images(cfg.data.bad_images)
}

/// The evaluation loader of a config: every test image in order, in `eval_batch_size` batches.
pub fn eval_loader(cfg: &TrainConfig, test: Arc<dyn Dataset>, device: Device) -> Loader {
    let info = test.info().clone();
    let pipeline = Pipeline::eval(&cfg.data.augment, &info.mean, &info.std);
    let lc = LoaderConfig {
        batch_size: cfg.train.eval_batch_size.unwrap_or(cfg.train.batch_size),
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        shuffle: false,
        drop_last: false,
        seed: cfg.seed,
    };
    Loader::new(test, pipeline, lc, device).with_bad_images(cfg.data.bad_images)
}
