//! Transforms and the loader on real data: each transform's invariants (padding, crops, flips,
//! resampling, photometric steps), and the loader's determinism, epoch coverage, shards and
//! two-view batches.
mod common;
use common::*;
use rand::SeedableRng;
use samix::data::loader::{Loader, LoaderConfig, Shard};
use samix::data::resample;
use samix::data::transform::{self, Pipeline, Step};
use samix::data::{cifar, idx, Dataset, InMemoryDataset, PixelView, RawImage};
use samix::data::{AugmentConfig, DatasetKind, PaddingMode};
use std::sync::Arc;

fn ramp(c: usize, h: usize, w: usize) -> RawImage {
    RawImage::new(c, h, w, (0..c * h * w).map(|i| (i % 251) as u8).collect())
}

#[test]
fn transforms_keep_their_invariants() {
    let img = ramp(3, 8, 6);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // Reflect padding mirrors without repeating the edge.
    let p = transform::pad(&img, 2, PaddingMode::Reflect);
    assert_eq!((p.height, p.width), (12, 10));
    assert_eq!(p.pixel(1, 2, 0), img.pixel(1, 0, 2));
    assert_eq!(p.pixel(1, 0, 2), img.pixel(1, 2, 0));
    assert_eq!(p.pixel(0, 11, 9), img.pixel(0, 5, 3));
    let z = transform::pad(&img, 2, PaddingMode::Zeros);
    assert_eq!(z.pixel(2, 0, 0), 0);
    assert_eq!(z.pixel(2, 2, 2), img.pixel(2, 0, 0));
    // A random crop of the padded image has the input size and is a window of the padded image.
    for _ in 0..20 {
        let step = Step::RandomCrop { size: 8, padding: 2, mode: PaddingMode::Reflect };
        let c = transform::apply_step(&step, img.clone(), &mut rng);
        assert_eq!((c.channels, c.height, c.width), (3, 8, 8));
    }
    assert_eq!(transform::hflip(&transform::hflip(&img)), img);
    assert_eq!(transform::hflip(&img).pixel(0, 3, 0), img.pixel(0, 3, 5));
    // Resampling a window onto its own size is the identity.
    assert_eq!(resample::resize_window(PixelView::planar(&img), 0.0, 0.0, 8.0, 6.0, 8, 6), img);
    let rrc = Step::RandomResizedCrop {
        size: 5,
        scale: (0.08, 1.0),
        ratio: (0.75, 4.0 / 3.0),
        interpolation: samix::data::Interpolation::Bilinear,
    };
    for _ in 0..20 {
        let o = transform::apply_step(&rrc, img.clone(), &mut rng);
        assert_eq!((o.height, o.width), (5, 5));
    }
    let rc = transform::apply_step(&Step::ResizeCenterCrop { resize: 12, crop: 10 }, ramp(3, 20, 30), &mut rng);
    assert_eq!((rc.height, rc.width), (10, 10));
    // Normalisation: (p/255 − mean)/std per channel.
    let pipe = Pipeline { steps: vec![], mean: vec![0.5, 0.25, 0.0], std: vec![0.5, 0.25, 1.0], max_decode_scale: 1 };
    // On the device, from bytes: the same f32 values, bit for bit, as this formula in f32 (what
    // the workers computed before they handed over bytes).
    let every = RawImage::new(3, 16, 16, (0..768).map(|i| (i % 256) as u8).collect());
    let bytes = tch::Tensor::from_slice(&every.data).view([1, 3, 16, 16]);
    let out = Vec::<f32>::try_from(pipe.normalizer(3, tch::Device::Cpu).apply(&bytes).flatten(0, -1)).unwrap();
    for (i, (&p, &o)) in every.data.iter().zip(&out).enumerate() {
        let c = i / 256;
        assert_eq!(o.to_bits(), ((p as f32 / 255.0 - pipe.mean[c]) / pipe.std[c]).to_bits(), "pixel {i}");
    }
    // The CIFAR recipe pipeline: crop with reflect padding 4, then flip.
    let cfg = AugmentConfig { crop_padding: 4, hflip: true, ..Default::default() };
    let train = Pipeline::train(&cfg, Some(32), &[0.5; 3], &[0.5; 3]);
    assert_eq!(
        train.steps,
        vec![Step::RandomCrop { size: 32, padding: 4, mode: PaddingMode::Reflect }, Step::HorizontalFlip]
    );
}

#[test]
fn loader_is_deterministic_and_covers_the_epoch() {
    let (train, _) = idx::load(&mnist(), DatasetKind::Mnist, false).unwrap();
    let mut train: InMemoryDataset = train;
    train.truncate(257);
    let ds: Arc<dyn Dataset> = Arc::new(train);
    let cfg = AugmentConfig { crop_padding: 2, hflip: true, ..Default::default() };
    let make = |workers: usize, drop_last: bool| {
        let pipe = Pipeline::train(&cfg, Some(28), &[0.1307], &[0.3081]);
        let lc = LoaderConfig { batch_size: 32, workers, prefetch: 2, shuffle: true, drop_last, seed: 3 };
        Loader::new(ds.clone(), pipe, lc, tch::Device::Cpu)
    };
    let collect = |l: &Loader, epoch: u64| -> (Vec<i64>, tch::Tensor) {
        let mut labels = Vec::new();
        let mut images = Vec::new();
        for b in l.epoch(epoch) {
            let b = b.unwrap();
            assert_eq!(b.images.size()[1..], [1, 28, 28]);
            labels.extend(Vec::<i64>::try_from(&b.labels).unwrap());
            images.push(b.images);
        }
        (labels, tch::Tensor::cat(&images, 0))
    };
    let one = make(1, false);
    let three = make(3, false);
    assert_eq!(one.num_batches(), 9);
    let (l1, i1) = collect(&one, 0);
    let (l3, i3) = collect(&three, 0);
    assert_eq!(l1.len(), 257);
    assert_eq!(l1, l3, "batch order must not depend on the worker count");
    assert!(i1.equal(&i3), "augmentation must not depend on the worker count");
    // Labels are those of the shuffled order, and every sample appears once.
    let order = one.order(0);
    assert_eq!(l1, order.iter().map(|&i| ds.label(i)).collect::<Vec<_>>());
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..257).collect::<Vec<_>>());
    assert_ne!(one.order(1), order, "each epoch reshuffles");
    let (l1_again, i1_again) = collect(&one, 0);
    assert_eq!(l1, l1_again);
    assert!(i1.equal(&i1_again));
    assert_eq!(make(2, true).num_batches(), 8);
}

/// Data-parallel shards (DistributedSampler's striding): at every step the ranks' batches together
/// are one process's batch of the summed size (images and augmentation alike), with as many steps
/// per epoch; evaluation shards hold every image exactly once.
#[test]
fn shards_split_each_global_batch_and_cover_the_epoch() {
    let (train, _) = idx::load(&mnist(), DatasetKind::Mnist, false).unwrap();
    let mut train: InMemoryDataset = train;
    train.truncate(209);
    let ds: Arc<dyn Dataset> = Arc::new(train);
    let cfg = AugmentConfig { crop_padding: 2, hflip: true, ..Default::default() };
    let make = |batch_size: usize, drop_last: bool, shuffle: bool| {
        let pipe = Pipeline::train(&cfg, Some(28), &[0.1307], &[0.3081]);
        let lc = LoaderConfig { batch_size, workers: 2, prefetch: 2, shuffle, drop_last, seed: 11 };
        Loader::new(ds.clone(), pipe, lc, tch::Device::Cpu)
    };
    let batches = |l: &Loader| -> Vec<(tch::Tensor, tch::Tensor)> {
        l.epoch(2).map(|b| b.unwrap()).map(|b| (b.images, b.labels)).collect()
    };
    // Training: 3 ranks × 10 against 1 × 30: 209 images make 6 whole batches (180 images, 60
    // per rank); so do 2 × 15 and 6 × 5. (Padding 209 to a multiple of 3, as DistributedSampler
    // does, would give each rank 70 images: a seventh step.)
    let whole = make(30, true, true);
    let ranks: Vec<Loader> =
        (0..3).map(|r| make(30, true, true).sharded(Shard { rank: r, count: 3 }).unwrap()).collect();
    assert_eq!(whole.num_batches(), 6);
    assert!(ranks.iter().all(|l| l.num_batches() == 6 && l.order(2).len() == 60));
    for count in [2, 6] {
        assert!((0..count).all(|r| make(30, true, true).sharded(Shard { rank: r, count }).unwrap().num_batches() == 6));
    }
    let whole_batches = batches(&whole);
    let rank_batches: Vec<_> = ranks.iter().map(batches).collect();
    for (b, (images, labels)) in whole_batches.iter().enumerate() {
        // Rank r holds positions r, r+3, ... of the global batch: interleave them back.
        let parts: Vec<&(tch::Tensor, tch::Tensor)> = rank_batches.iter().map(|rb| &rb[b]).collect();
        assert!(parts.iter().all(|p| p.0.size()[0] == 10));
        let interleave = |pick: &dyn Fn(&(tch::Tensor, tch::Tensor)) -> tch::Tensor| {
            let stacked = tch::Tensor::stack(&parts.iter().map(|p| pick(p)).collect::<Vec<_>>(), 1);
            let mut shape = stacked.size();
            shape.remove(0);
            shape[0] = 30;
            stacked.reshape(shape.as_slice())
        };
        assert!(interleave(&|p| p.0.shallow_clone()).equal(images), "batch {b}: images differ");
        assert!(interleave(&|p| p.1.shallow_clone()).equal(labels), "batch {b}: labels differ");
    }
    // Evaluation: no padding; every image once over the ranks, batch size kept.
    let eval_ranks: Vec<Loader> =
        (0..3).map(|r| make(16, false, false).sharded(Shard { rank: r, count: 3 }).unwrap()).collect();
    let mut seen: Vec<usize> = eval_ranks.iter().flat_map(|l| l.order(0)).collect();
    seen.sort();
    assert_eq!(seen, (0..209).collect::<Vec<_>>());
    assert_eq!(eval_ranks.iter().map(|l| l.order(0).len()).collect::<Vec<_>>(), vec![70, 70, 69]);
    assert_eq!(eval_ranks[0].num_batches(), 5);
    // A training batch that does not split evenly is refused, naming the key.
    let err = make(32, true, true).sharded(Shard { rank: 0, count: 3 }).err().unwrap().to_string();
    assert!(err.contains("train.batch_size") && err.contains("3 processes"), "{err}");
}

/// Bicubic resampling (issue 11, item 7: the reference's random-resized crop for Tiny-ImageNet):
/// Keys' a = −0.5 kernel reproduces a quadratic image exactly inside the image (up to the byte
/// rounding), where bilinear resampling cannot; and the config selects it for the crop.
#[test]
fn bicubic_resampling_reproduces_quadratics_and_is_selectable() {
    let (h, w) = (20usize, 20usize);
    // Integer-valued on the pixel grid, below 256 wherever the resampling below reads.
    let q = |y: f64, x: f64| 4.0 * (x - 9.5) * (x - 9.5) + y;
    let data: Vec<u8> = (0..h).flat_map(|y| (0..w).map(move |x| q(y as f64, x as f64) as u8)).collect();
    let img = RawImage::new(1, h, w, data);
    // The window [4, 16) × [4, 16) at twice the resolution: every tap stays inside the image.
    let (top, left, side, out) = (4.0, 4.0, 12.0, 24usize);
    let up = resample::resize_window_bicubic(PixelView::planar(&img), top, left, side, side, out, out);
    let s = side / out as f64;
    for oy in 0..out {
        for ox in 0..out {
            let (cy, cx) = (top + (oy as f64 + 0.5) * s - 0.5, left + (ox as f64 + 0.5) * s - 0.5);
            let got = up.pixel(0, oy, ox) as f64;
            assert!((got - q(cy, cx)).abs() <= 0.5 + 1e-6, "({oy}, {ox}): {got} vs {}", q(cy, cx));
        }
    }
    let bilinear = resample::resize_window(PixelView::planar(&img), top, left, side, side, out, out);
    let worst = (0..out)
        .flat_map(|oy| (0..out).map(move |ox| (oy, ox)))
        .map(|(oy, ox)| {
            let (cy, cx) = (top + (oy as f64 + 0.5) * s - 0.5, left + (ox as f64 + 0.5) * s - 0.5);
            (bilinear.pixel(0, oy, ox) as f64 - q(cy, cx)).abs()
        })
        .fold(0.0, f64::max);
    // Linear interpolation a quarter pixel off the grid misses 4·¼·¾ = 0.75.
    assert!(worst > 0.6, "bilinear should miss the curvature, worst error {worst}");
    let cfg = AugmentConfig {
        image_size: Some(64),
        random_resized_crop: true,
        rrc_interpolation: samix::data::Interpolation::Bicubic,
        ..Default::default()
    };
    let pipe = Pipeline::train(&cfg, Some(64), &[0.5; 3], &[0.5; 3]);
    assert!(matches!(
        pipe.steps[0],
        Step::RandomResizedCrop { interpolation: samix::data::Interpolation::Bicubic, .. }
    ));
}

/// MoCo v2's two views (issue 13, item 1): a two-view loader gives `N×2×C×H×W` batches of the
/// shuffled images, the two views of an image differ, and both are reproducible from the seed
/// whatever the worker count.
#[test]
fn two_view_loader_gives_two_different_reproducible_views() {
    let (train, _) = cifar::load(&cifar100_archive(), DatasetKind::Cifar100, false).unwrap();
    let mut train: InMemoryDataset = train;
    train.truncate(48);
    let ds: Arc<dyn Dataset> = Arc::new(train);
    let cfg = AugmentConfig {
        image_size: Some(32),
        random_resized_crop: true,
        rrc_scale: [0.2, 1.0],
        hflip: true,
        color_jitter: [0.4, 0.4, 0.4, 0.1],
        color_jitter_p: 0.8,
        grayscale_p: 0.2,
        ..Default::default()
    };
    let make = |workers: usize| {
        let pipe = Pipeline::train(&cfg, Some(32), &[0.5, 0.5, 0.5], &[0.25, 0.25, 0.25]);
        let lc = LoaderConfig { batch_size: 16, workers, prefetch: 2, shuffle: true, drop_last: true, seed: 5 };
        Loader::new(ds.clone(), pipe, lc, tch::Device::Cpu).with_views(2)
    };
    let batches = |l: &Loader| -> Vec<samix::data::loader::Batch> { l.epoch(1).map(|b| b.unwrap()).collect() };
    let (one, two) = (batches(&make(1)), batches(&make(2)));
    assert_eq!(one.len(), 3);
    for (a, b) in one.iter().zip(&two) {
        assert_eq!(a.images.size(), [16, 2, 3, 32, 32]);
        assert!(a.images.equal(&b.images) && a.labels.equal(&b.labels), "views depend on the worker count");
        for n in 0..16 {
            let (v1, v2) = (a.images.get(n).get(0), a.images.get(n).get(1));
            let diff = (&v1 - &v2).abs().mean(tch::Kind::Float).double_value(&[]);
            assert!(diff > 1e-3, "the two views of image {n} are the same");
        }
    }
    // One view: the old layout.
    let single = Loader::new(
        ds.clone(),
        Pipeline::train(&cfg, Some(32), &[0.5], &[0.25]),
        LoaderConfig { batch_size: 16, workers: 1, prefetch: 1, shuffle: true, drop_last: true, seed: 5 },
        tch::Device::Cpu,
    );
    assert_eq!(single.epoch(0).next().unwrap().unwrap().images.size(), [16, 3, 32, 32]);
}

/// The photometric steps keep their invariants: jitter factors drawn within their ranges and in
/// every order, brightness scales, zero saturation and grayscale give equal channels, a half-turn
/// hue shift twice is the identity, a blur keeps a flat image flat and an image's mean.
#[test]
fn photometric_steps_keep_their_invariants() {
    use samix::data::color::{Jitter, Planes};
    let mut rng = samix::rng::SamixRng::seed_from_u64(1);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..400 {
        let ops = transform::draw_jitter([0.4, 0.4, 0.4, 0.1], &mut rng);
        assert_eq!(ops.len(), 4);
        orders.insert(ops.iter().map(std::mem::discriminant).collect::<Vec<_>>());
        for op in ops {
            match op {
                Jitter::Brightness(f) | Jitter::Contrast(f) | Jitter::Saturation(f) => {
                    assert!((0.6..=1.4).contains(&f), "{op:?}")
                }
                Jitter::Hue(h) => assert!((-0.1..=0.1).contains(&h), "{op:?}"),
            }
        }
    }
    assert_eq!(orders.len(), 24, "all 4! orders of the jitter operations occur");
    assert_eq!(transform::draw_jitter([0.4, 0.0, 0.0, 0.0], &mut rng).len(), 1, "zero strengths are skipped");

    let img = ramp(3, 8, 8);
    let planes = |img: &RawImage| Planes::from_image(img);
    let mut bright = planes(&img);
    bright.jitter(Jitter::Brightness(0.5));
    let half: Vec<u8> = img.data.iter().map(|&v| (v as f32 * 0.5).round() as u8).collect();
    assert_eq!(bright.to_image().data, half);
    for gray in [
        {
            let mut p = planes(&img);
            p.jitter(Jitter::Saturation(0.0));
            p.to_image()
        },
        {
            let mut p = planes(&img);
            p.grayscale();
            p.to_image()
        },
    ] {
        let n = 64;
        assert_eq!(gray.data[..n], gray.data[n..2 * n]);
        assert_eq!(gray.data[..n], gray.data[2 * n..]);
    }
    // Known values: a third of a turn takes pure red to pure green; zero contrast is the flat
    // luma mean; zero brightness is black.
    let red = RawImage::new(3, 1, 2, vec![255, 255, 0, 0, 0, 0]);
    let mut p = planes(&red);
    p.jitter(Jitter::Hue(1.0 / 3.0));
    assert_eq!(p.to_image().data, [0, 0, 255, 255, 0, 0]);
    let mut p = planes(&img);
    p.jitter(Jitter::Contrast(0.0));
    let luma_mean = (0..64)
        .map(|i| 0.299 * img.data[i] as f32 + 0.587 * img.data[64 + i] as f32 + 0.114 * img.data[128 + i] as f32)
        .sum::<f32>()
        / 64.0;
    assert!(p.to_image().data.iter().all(|&v| v == luma_mean.round() as u8), "flat at the luma mean {luma_mean}");
    let mut p = planes(&img);
    p.jitter(Jitter::Brightness(0.0));
    assert!(p.to_image().data.iter().all(|&v| v == 0));
    let mut hue = planes(&img);
    hue.jitter(Jitter::Hue(0.5));
    assert_ne!(hue.to_image().data, img.data, "a half-turn hue shift changes a coloured image");
    hue.jitter(Jitter::Hue(0.5));
    let back = hue.to_image();
    assert!(back.data.iter().zip(&img.data).all(|(a, b)| (*a as i32 - *b as i32).abs() <= 1));
    let flat = RawImage::new(3, 8, 8, vec![77; 192]);
    let mut blurred = planes(&flat);
    blurred.blur(1.5);
    assert_eq!(blurred.to_image().data, flat.data);
    let mut blurred = planes(&img);
    blurred.blur(0.8);
    let mean = |d: &[f32]| d.iter().sum::<f32>() / d.len() as f32;
    let before: Vec<f32> = img.data.iter().map(|&v| v as f32).collect();
    assert!(
        (mean(&blurred.data) - mean(&before)).abs() < 0.5,
        "a blur (edges repeated) nearly keeps the mean of a ramp"
    );
    assert_ne!(blurred.to_image().data, img.data);
}
