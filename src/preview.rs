//! Previews of mixing on real data (`samix mix`): the first test images of a dataset mixed by the
//! policy a config names, written as a grid ([`crate::pictures::policy_grid`]). Reads the dataset
//! and, for policies that consult one, a trained classifier; writes the PNG only.
use crate::config::MixConfig;
use crate::data::loader::{Loader, LoaderConfig};
use crate::data::transform::Pipeline;
use crate::data::verify::detect;
use crate::data::{open_splits, DataConfig};
use crate::mix::{input_saliency, MixedBatch};
use crate::pictures::{mixed_grid, policy_grid};
use crate::rng::{stream, Stream};
use crate::train::{Mixing, Model};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// What `samix mix` draws: `n` test images of the dataset at `data`, mixed by `mix`.
#[derive(Clone, Debug)]
pub struct MixGridRequest {
    pub mix: MixConfig,
    /// A dataset archive or folder (its test split is used).
    pub data: PathBuf,
    pub n: usize,
    /// Only images of classes `lo..hi` (see `data.classes`).
    pub classes: Option<[usize; 2]>,
    pub seed: u64,
    /// Side images of folder datasets are resized to.
    pub image_size: usize,
    /// The grid's PNG.
    pub out: PathBuf,
}

/// Mixes the first `n` test images as `req.mix` says and writes the grid (see [`policy_grid`]).
/// PuzzleMix reads the saliency of the classifier in `checkpoint` (a samix run or checkpoint
/// folder). Returns the mixed batch.
pub fn write_mix_grid(req: &MixGridRequest, checkpoint: Option<&Path>) -> Result<MixedBatch> {
    if req.n == 0 {
        return Err(Error::Argument("--n must be at least 1".into()));
    }
    if req.image_size == 0 {
        return Err(Error::Argument("--image-size must be at least 1".into()));
    }
    use crate::limits::{check_size, MAX_GRID_IMAGES, MAX_IMAGE_SIDE};
    check_size("--image-size", req.image_size, MAX_IMAGE_SIDE)?;
    check_size("--n", req.n, MAX_GRID_IMAGES)?;
    let batch_bytes = (req.n as u64) * 3 * (req.image_size as u64).pow(2) * 4;
    crate::limits::check_tensor_bytes("--n, --image-size", "the batch of images", batch_bytes)?;
    let kind = detect(&req.data)?;
    let mut dc = DataConfig::new(kind, Some(req.data.clone()));
    if kind.native_size().is_none() {
        dc.augment.image_size = Some(req.image_size);
    }
    dc.classes = req.classes;
    dc.check()?;
    dc.train_limit = Some(0);
    dc.test_limit = Some(req.n);
    dc.verify_checksums = false;
    dc.workers = 1;
    dc.prefetch = 1;
    let splits = open_splits(&dc)?;
    let info = splits.test.info().clone();
    let pipeline = Pipeline::eval(&dc.augment, &info.mean, &info.std);
    let lc =
        LoaderConfig { batch_size: req.n, workers: 1, prefetch: 1, shuffle: false, drop_last: false, seed: req.seed };
    let loader = Loader::new(splits.test, pipeline, lc, Device::Cpu);
    let batch = loader.epoch(0).next().ok_or_else(|| Error::data(&req.data, "no test images"))??;
    let mut rng = stream(req.seed, Stream::Visual, 0, 0);
    match Mixing::from_config(&req.mix, crate::samix::Scenario::Supervised, &info, dc.image_side(), Device::Cpu)? {
        Mixing::Input(policy) => {
            policy_grid(&policy, &batch.images, &batch.labels, &info.mean, &info.std, &mut rng, &req.out)
        }
        Mixing::Saliency(puzzle) => {
            let dir = checkpoint.ok_or_else(|| {
                Error::config("--checkpoint", "puzzlemix consults a trained classifier: pass --checkpoint RUN_DIR")
            })?;
            let (_vs, net) = Model::load_frozen(dir, Device::Cpu)?;
            crate::train::mixing::check_classifier_channels(crate::model::StagedNet::in_channels(&net), &info)?;
            // The saliency is the gradient of the loss of each image's own label: the classifier
            // must have that class.
            let classes = crate::model::StagedNet::num_classes(&net);
            let top_label = batch.labels.max().int64_value(&[]);
            if top_label >= classes {
                let msg = format!(
                    "the checkpoint's classifier predicts {classes} classes; these images have label {top_label} (choose images of its classes with --classes, or a classifier of this dataset)"
                );
                return Err(Error::config("--checkpoint", msg));
            }
            let saliency = input_saliency(&net, &batch.images, &batch.labels);
            let mixed = puzzle.mix_with_saliency(&batch.images, &batch.labels, &saliency, &mut rng);
            mixed_grid(mixed, &batch.images, &info.mean, &info.std, &req.out)
        }
        Mixing::Feature(_) | Mixing::Online { .. } => Err(Error::config(
            "--policy",
            format!("{} mixes inside the network or learns its masks; it has no input grid", req.mix.name()),
        )),
    }
}
