//! The batch loader: shuffles per epoch from a seeded stream, loads and augments on worker
//! threads, keeps a bounded number of batches prefetched, and uploads finished batches to the
//! device. Batches arrive in a fixed order whatever the thread timing (worker w builds batches
//! w, w+W, ...), and each image's augmentation draws from its own (seed, epoch, index) stream, so
//! a run is reproducible. Records how long the consumer waited. In data-parallel training each
//! rank's loader reads its [`Shard`] of the same epoch order.
use super::transform::{Normalizer, Pipeline};
use super::{BadImages, Dataset, RawImage};
use crate::rng::{stream, Stream};
use crate::{Error, Result};
use rand::seq::SliceRandom;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches each worker may hold ready ahead of the consumer.
    pub prefetch: usize,
    pub shuffle: bool,
    /// Drop the last incomplete batch (training) or keep it (evaluation).
    pub drop_last: bool,
    pub seed: u64,
}

/// A batch on the target device: images `N×C×H×W` (f32, normalised) and labels `N` (i64).
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The part of every epoch one of `count` data-parallel ranks reads: the epoch's order (the same
/// on every rank) taken with stride `count` from position `rank`, as PyTorch's
/// DistributedSampler deals it. A training loader (dropping its last partial batch) first cuts
/// the order to whole batches of the summed batch size — where DistributedSampler pads instead —
/// so that every rank has as many batches, and batch `b` of all ranks together holds exactly the
/// images of batch `b` of one process reading the whole order with the summed batch size (the
/// epoch's steps and images do not depend on the world size). An evaluation loader does not cut,
/// so every image is counted once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub count: usize,
}

impl Shard {
    /// Everything: one process.
    pub const WHOLE: Shard = Shard { rank: 0, count: 1 };
}

pub struct Loader {
    dataset: Arc<dyn Dataset>,
    pipeline: Arc<Pipeline>,
    cfg: LoaderConfig,
    device: Device,
    shard: Shard,
    views: usize,
    bad_images: BadImages,
}

impl Loader {
    pub fn new(dataset: Arc<dyn Dataset>, pipeline: Pipeline, cfg: LoaderConfig, device: Device) -> Self {
        Loader {
            dataset,
            pipeline: Arc::new(pipeline),
            cfg,
            device,
            shard: Shard::WHOLE,
            views: 1,
            bad_images: BadImages::Stop,
        }
    }

    /// This loader skipping images it cannot read or decode (`BadImages::Skip`: the batch is
    /// one image short, [`EpochIter::skipped`] names them) instead of failing the batch.
    pub fn with_bad_images(mut self, bad_images: BadImages) -> Self {
        self.bad_images = bad_images;
        self
    }

    /// This loader giving `views` independently augmented copies of every image (self-supervised
    /// pre-training: 2): batches of `N×V×C×H×W` images, view v of an image drawn after views
    /// 0..v from the image's own stream. 1 (the default) gives `N×C×H×W`.
    pub fn with_views(mut self, views: usize) -> Self {
        self.views = views.max(1);
        self
    }

    pub fn views(&self) -> usize {
        self.views
    }

    /// This loader restricted to `shard` of every epoch. A training loader (dropping its last
    /// partial batch) splits its batch size evenly over the ranks, which must divide it; an
    /// evaluation loader keeps its batch size.
    pub fn sharded(mut self, shard: Shard) -> Result<Self> {
        if shard.count == 0 || shard.rank >= shard.count {
            return Err(Error::Argument(format!("shard {} of {} does not exist", shard.rank, shard.count)));
        }
        if self.cfg.drop_last {
            if !self.cfg.batch_size.is_multiple_of(shard.count) {
                return Err(Error::config(
                    "train.batch_size",
                    format!(
                        "{} does not split evenly over {} processes (the batch size is the total over all of them)",
                        self.cfg.batch_size, shard.count
                    ),
                ));
            }
            self.cfg.batch_size /= shard.count;
        }
        self.shard = shard;
        Ok(self)
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Samples of an epoch this loader reads (its shard; whole batches only when it drops
    /// partial ones).
    fn shard_len(&self) -> usize {
        let (n, Shard { rank, count }) = (self.dataset.len(), self.shard);
        if self.cfg.drop_last {
            self.whole_batches_len(n) / count
        } else {
            n.saturating_sub(rank).div_ceil(count)
        }
    }

    /// The first samples of an epoch's order that fill whole batches of the summed batch size
    /// (the batch size of all shards together).
    fn whole_batches_len(&self, n: usize) -> usize {
        let global = self.cfg.batch_size.max(1) * self.shard.count;
        n / global * global
    }

    /// Batches per epoch (per rank when sharded).
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.shard_len(), self.cfg.batch_size.max(1));
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Where finished batches are uploaded.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The sample order of an epoch (of this loader's shard).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.cfg.shuffle {
            order.shuffle(&mut stream(self.cfg.seed, Stream::Shuffle, epoch, 0));
        }
        let Shard { rank, count } = self.shard;
        if count == 1 {
            return order;
        }
        if self.cfg.drop_last {
            order.truncate(self.whole_batches_len(n));
        }
        order.into_iter().skip(rank).step_by(count).collect()
    }

    /// Starts the workers for one epoch and returns the batches in order.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// As [`Loader::epoch`], starting at batch `first` (an epoch resumed mid-way): the batches
    /// are the ones the whole epoch would give from there, since order and augmentation draws
    /// depend only on (seed, epoch, sample).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> EpochIter {
        let order = Arc::new(self.order(epoch));
        let num_batches = self.num_batches();
        let first = first.min(num_batches);
        let workers = self.cfg.workers.max(1).min((num_batches - first).max(1));
        let mut receivers = Vec::with_capacity(workers);
        let skipped = Arc::new(Mutex::new(Vec::new()));
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
            let (dataset, pipeline, order) = (self.dataset.clone(), self.pipeline.clone(), order.clone());
            let (bs, seed, views) = (self.cfg.batch_size.max(1), self.cfg.seed, self.views);
            let (skip, skipped) = (self.bad_images == BadImages::Skip, skipped.clone());
            std::thread::spawn(move || {
                for b in (first + w..num_batches).step_by(workers) {
                    let end = ((b + 1) * bs).min(order.len());
                    let source = Source { dataset: &*dataset, pipeline: &pipeline, seed, epoch, views };
                    let batch = build_batch(&source, &order[b * bs..end], skip.then_some(&*skipped));
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
            receivers.push(rx);
        }
        EpochIter {
            skipped,
            receivers,
            first,
            next: first,
            num_batches,
            device: self.device,
            pipeline: self.pipeline.clone(),
            normalizer: None,
            waited: Duration::ZERO,
        }
    }
}

/// The pixels of a batch being filled, image by image (bytes: the device normalises them).
struct BatchPixels {
    pixels: Vec<u8>,
    /// The shape every image must have: the first one's.
    shape: Option<(usize, usize, usize)>,
    filled: usize,
    capacity: usize,
}

impl BatchPixels {
    /// Copies `img` into the next slot; `item` names it if its size differs from the first.
    fn push(&mut self, img: &RawImage, dataset: &dyn Dataset, item: usize) -> Result<()> {
        let this = (img.channels, img.height, img.width);
        let capacity = self.capacity;
        let pixels = &mut self.pixels;
        let (c, h, w) = *self.shape.get_or_insert_with(|| {
            *pixels = vec![0u8; capacity * this.0 * this.1 * this.2];
            this
        });
        if this != (c, h, w) {
            return Err(Error::Data {
                path: format!("{} item {item}", dataset.info().name).into(),
                msg: format!(
                    "image is {}×{}×{} after transforms but the batch is {c}×{h}×{w}; set data.augment.image_size so all images share one size",
                    this.0, this.1, this.2
                ),
            });
        }
        let size = c * h * w;
        self.pixels[self.filled * size..(self.filled + 1) * size].copy_from_slice(&img.data);
        self.filled += 1;
        Ok(())
    }
}

/// Says, at the end of `what` (an epoch, an evaluation), how many images were skipped as
/// unreadable and which (the first five in full); nothing when none was.
pub fn report_skipped(what: &str, skipped: &[String]) {
    if skipped.is_empty() {
        return;
    }
    let shown: Vec<&str> = skipped.iter().take(5).map(String::as_str).collect();
    let more = if skipped.len() > 5 { format!("; and {} more", skipped.len() - 5) } else { String::new() };
    tracing::warn!(
        "{what}: skipped {} unreadable images (data.bad_images = \"skip\"): {}{more}",
        skipped.len(),
        shown.join("; ")
    );
}

/// Where a worker's images come from and how they are augmented.
struct Source<'a> {
    dataset: &'a dyn Dataset,
    pipeline: &'a Pipeline,
    seed: u64,
    epoch: u64,
    views: usize,
}

/// Loads and augments `indices` into one CPU batch of bytes (`views` copies of each image). With
/// `skipped`, an image that cannot be read or decoded is left out and its error recorded there.
fn build_batch(source: &Source, indices: &[usize], skipped: Option<&Mutex<Vec<String>>>) -> Result<(Tensor, Tensor)> {
    let Source { dataset, pipeline, seed, epoch, views } = *source;
    let capacity = indices.len() * views;
    let mut batch = BatchPixels { pixels: Vec::new(), shape: None, filled: 0, capacity };
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        let mut rng = stream(seed, Stream::Augment, epoch, i as u64);
        let loaded = if views == 1 {
            // One view: the pipeline may decode only the part of the image its crop reads.
            pipeline.load_and_apply(dataset, i, &mut rng).map(|img| vec![img])
        } else {
            // Every view but the last augments a copy; the last takes the decoded image itself.
            dataset.load(i).map(|raw| {
                let mut views: Vec<RawImage> = (1..views).map(|_| pipeline.apply(raw.clone(), &mut rng)).collect();
                views.push(pipeline.apply(raw, &mut rng));
                views
            })
        };
        let images = match (loaded, skipped) {
            (Ok(images), _) => images,
            (Err(e @ (Error::Data { .. } | Error::Io { .. })), Some(list)) => {
                list.lock().map_err(|_| Error::Argument("a loader worker panicked".into()))?.push(e.to_string());
                continue;
            }
            (Err(e), _) => return Err(e),
        };
        for img in &images {
            batch.push(img, dataset, i)?;
        }
        labels.push(dataset.label(i));
    }
    if labels.is_empty() && !indices.is_empty() {
        let msg = format!("all {} images of a batch were unreadable and skipped", indices.len());
        return Err(Error::data(format!("{} dataset", dataset.info().name), msg));
    }
    let (c, h, w) = batch.shape.unwrap_or((0, 0, 0));
    let n = labels.len() as i64;
    batch.pixels.truncate(labels.len() * views * c * h * w);
    let dims: Vec<i64> = if views > 1 {
        vec![n, views as i64, c as i64, h as i64, w as i64]
    } else {
        vec![n, c as i64, h as i64, w as i64]
    };
    let images = Tensor::from_slice(&batch.pixels).view(dims.as_slice());
    Ok((images, Tensor::from_slice(&labels)))
}

pub struct EpochIter {
    /// The errors of the images skipped so far (`BadImages::Skip`).
    skipped: Arc<Mutex<Vec<String>>>,
    receivers: Vec<Receiver<Result<(Tensor, Tensor)>>>,
    /// The batch the iteration started at (the workers deal out batches from there).
    first: usize,
    next: usize,
    num_batches: usize,
    device: Device,
    pipeline: Arc<Pipeline>,
    /// Made at the first batch, when its channel count is known.
    normalizer: Option<Normalizer>,
    waited: Duration,
}

impl EpochIter {
    /// Total time the consumer spent blocked waiting for a batch.
    pub fn waited(&self) -> Duration {
        self.waited
    }
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }
    /// The errors of the images skipped so far in this epoch, each naming its file.
    pub fn skipped(&self) -> Vec<String> {
        self.skipped.lock().map(|list| list.clone()).unwrap_or_default()
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.num_batches {
            return None;
        }
        let rx = &self.receivers[(self.next - self.first) % self.receivers.len()];
        self.next += 1;
        let start = Instant::now();
        let received = rx.recv();
        self.waited += start.elapsed();
        let result = match received {
            Ok(Ok((bytes, labels))) => {
                let channels = bytes.size().get(bytes.dim().saturating_sub(3)).copied().unwrap_or(1) as usize;
                let (pipeline, device) = (&self.pipeline, self.device);
                let normalizer = self.normalizer.get_or_insert_with(|| pipeline.normalizer(channels, device));
                Ok(Batch {
                    images: normalizer.apply(&crate::device::upload(&bytes, device)),
                    labels: crate::device::upload(&labels, device),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Argument("a loader worker stopped unexpectedly".into())),
        };
        if result.is_err() {
            self.next = self.num_batches;
        }
        Some(result)
    }
}
