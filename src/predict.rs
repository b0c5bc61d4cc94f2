//! Predictions of a trained checkpoint on image files: each image is decoded (PNG/JPEG, any
//! size), brought to the run's input as its test transform does (grey or colour as the dataset,
//! shorter side resized and centre-cropped to the model's side), normalised with the dataset's
//! statistics, and classified; the top-k classes come back with names and probabilities. Reads
//! the checkpoint, its config and the dataset's class names; writes nothing.
use crate::config::TrainConfig;
use crate::data::folder::{decode_rgb, images_in};
use crate::data::transform::{apply_step, Pipeline, Step};
use crate::data::{open_splits, RawImage};
use crate::train::{checkpoint, Model};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ranked {
    pub class: usize,
    pub name: String,
    pub probability: f64,
}

/// The top classes of one image, most probable first.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<Ranked>,
}

/// The image files named by `inputs`: files as given, folders as their image files (as an image
/// folder dataset lists them: `.png`/`.jpg`/`.jpeg`, not hidden, sorted, not recursive).
pub fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = images_in(input)?;
            if found.is_empty() {
                return Err(Error::data(input, "no images (.png/.jpg/.jpeg) in this folder"));
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(Error::data(input, "no such image or folder"));
        }
    }
    Ok(files)
}

/// `img` (3 channels) as the network's input: `channels` (1 = luma), `side`×`side`.
fn to_input(img: RawImage, channels: usize, side: usize, resize: usize) -> RawImage {
    let img = if channels == 1 && img.channels == 3 {
        let (h, w) = (img.height, img.width);
        let luma = (0..h * w)
            .map(|i| {
                let [r, g, b] = [0, 1, 2].map(|c| img.data[c * h * w + i] as f64);
                (0.299 * r + 0.587 * g + 0.114 * b).round().clamp(0.0, 255.0) as u8
            })
            .collect();
        RawImage::new(1, h, w, luma)
    } else {
        img
    };
    if img.height == side && img.width == side {
        return img;
    }
    let mut rng = crate::rng::stream(0, crate::rng::Stream::Visual, 0, 0);
    apply_step(&Step::ResizeCenterCrop { resize, crop: side }, img, &mut rng)
}

/// Classifies `files` with the network of a checkpoint (a checkpoint folder, or a run folder for
/// its latest); `data` overrides where the run's dataset is (its class names and statistics).
pub fn predict(
    checkpoint: &Path,
    files: &[PathBuf],
    k: usize,
    data: Option<PathBuf>,
    device: Device,
) -> Result<Vec<Prediction>> {
    if k == 0 {
        return Err(Error::Argument("--top must be at least 1".into()));
    }
    let ckpt = checkpoint::open(checkpoint)?;
    let mut cfg = TrainConfig::load_stored(&ckpt.config_path(), &[])?;
    if let Some(d) = data {
        cfg.data.path = Some(d);
    }
    cfg.data.train_limit = Some(0);
    cfg.data.test_limit = Some(1);
    let splits = open_splits(&cfg.data)?;
    let info = splits.test.info().clone();
    let model = Model::from_checkpoint(&ckpt, &cfg, &info, device)?;
    let side = cfg.image_side().ok_or_else(|| Error::config("data.augment.image_size", "needed to predict"))? as usize;
    let resize = cfg.data.augment.test_resize.unwrap_or(side);
    // The test transform without its resize (done above, for any input size): normalisation.
    let pipeline = Pipeline::eval(
        &crate::data::AugmentConfig { image_size: None, ..cfg.data.augment.clone() },
        &info.mean,
        &info.std,
    );
    let normalizer = pipeline.normalizer(info.channels, device);
    let k = k.min(info.num_classes);
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(files.len());
    for chunk in files.chunks(64) {
        let mut pixels = vec![0u8; chunk.len() * info.channels * side * side];
        for (n, path) in chunk.iter().enumerate() {
            let img = to_input(decode_rgb(path)?, info.channels, side, resize);
            let size = img.channels * side * side;
            pixels[n * size..(n + 1) * size].copy_from_slice(&img.data);
        }
        let bytes = Tensor::from_slice(&pixels)
            .view([chunk.len() as i64, info.channels as i64, side as i64, side as i64])
            .to_device(device);
        let x = normalizer.apply(&bytes);
        let probs = model.net.forward_t(&x, false).to_kind(Kind::Float).softmax(-1, Kind::Float);
        let (p, idx) = probs.topk(k as i64, -1, true, true);
        let (p, idx) = (p.to_device(Device::Cpu), idx.to_device(Device::Cpu));
        for (n, path) in chunk.iter().enumerate() {
            let top = (0..k as i64)
                .map(|j| {
                    let class = idx.int64_value(&[n as i64, j]) as usize;
                    let name = info.class_names.get(class).cloned().unwrap_or_else(|| class.to_string());
                    Ranked { class, name, probability: p.double_value(&[n as i64, j]) }
                })
                .collect();
            out.push(Prediction { path: path.clone(), top });
        }
    }
    Ok(out)
}
