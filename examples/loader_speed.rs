//! How many images per second samix's training input pipeline delivers from a folder of JPEGs
//! (random-resized crop to 224, flip, normalise, batches of 100), the half of issue 25's loader
//! benchmark that `bench/torchvision_loader.py` is the other half of (`bench/loader.sh` runs both).
//!
//!     cargo run --release --example loader_speed -- ROOT WORKERS [MODE] [EPOCHS] [--randaug]
//!
//! ROOT holds `train/<class>/*.JPEG` (and a `val/` folder). MODE: `scaled` (the default: partial
//! decoding, DCT downscaling allowed), `partial` (partial decoding at full resolution), `full`
//! (every image decoded whole by `image`, as before partial decoding). `--randaug` adds timm's
//! `rand-m9-mstd0.5-inc1` RandAugment after the flip. Prints one line:
//! `mode workers images seconds images/s`.
use anyhow::{bail, Context, Result};
use samix::data::folder::load_image_folder;
use samix::data::loader::{Loader, LoaderConfig};
use samix::data::randaug::RandAugmentConfig;
use samix::data::transform::Pipeline;
use samix::data::{AugmentConfig, Dataset, DatasetInfo, RawImage};
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

/// A dataset that only decodes whole images (the trait's default `load_window`).
struct WholeImages(Arc<dyn Dataset>);

impl Dataset for WholeImages {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn label(&self, index: usize) -> i64 {
        self.0.label(index)
    }
    fn load(&self, index: usize) -> samix::Result<RawImage> {
        self.0.load(index)
    }
    fn info(&self) -> &DatasetInfo {
        self.0.info()
    }
}

fn main() -> Result<()> {
    let randaug = std::env::args().any(|a| a == "--randaug");
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let [root, workers, rest @ ..] = args.as_slice() else {
        bail!("usage: loader_speed ROOT WORKERS [scaled|partial|full] [EPOCHS]");
    };
    let workers: usize = workers.parse().context("WORKERS")?;
    let mode = rest.first().map(String::as_str).unwrap_or("scaled");
    let epochs: u64 = rest.get(1).map(|e| e.parse()).transpose().context("EPOCHS")?.unwrap_or(2);
    let (train, _) = load_image_folder(root.as_ref())?;
    let train: Arc<dyn Dataset> = Arc::new(train);
    let augment = AugmentConfig {
        image_size: Some(224),
        random_resized_crop: true,
        hflip: true,
        scaled_decode: mode == "scaled",
        randaugment: randaug.then(RandAugmentConfig::default),
        ..Default::default()
    };
    let dataset = match mode {
        "scaled" | "partial" => train,
        "full" => Arc::new(WholeImages(train)),
        other => bail!("unknown mode `{other}` (scaled, partial or full)"),
    };
    let info = dataset.info().clone();
    let pipeline = Pipeline::train(&augment, None, &info.mean, &info.std);
    let cfg = LoaderConfig { batch_size: 100, workers, prefetch: 2, shuffle: true, drop_last: false, seed: 0 };
    let loader = Loader::new(dataset, pipeline, cfg, Device::Cpu);
    // One epoch to warm the page cache and the allocator, then the timed ones.
    for batch in loader.epoch(0) {
        batch?;
    }
    let (start, mut images) = (Instant::now(), 0usize);
    for epoch in 1..=epochs {
        for batch in loader.epoch(epoch) {
            images += batch?.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mode = if randaug { format!("{mode}+randaug") } else { mode.to_string() };
    println!("{mode} {workers} {images} {secs:.2} {:.1}", images as f64 / secs);
    Ok(())
}
