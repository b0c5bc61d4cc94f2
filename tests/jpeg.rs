//! JPEG decoding against PIL's (issue 25): baseline, progressive, 4:4:4, greyscale and CMYK
//! files written by the venv's Pillow are decoded by samix (`folder::decode_rgb`) to within one
//! grey level of Pillow's own RGB decode of the same bytes; a truncated file is refused, naming it.
mod common;
use samix::data::folder::decode_rgb;

/// Writes the test JPEGs into `dir` with Pillow, and beside each `<name>.rgb`: Pillow's decode
/// of it (`convert("RGB")`, HWC bytes).
const WRITE: &str = r#"
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
yy, xx = np.mgrid[0:120, 0:160]
rng = np.random.default_rng(0)
noise = rng.normal(0, 18, (120, 160, 3))
img = np.stack([128 + 90 * np.sin(xx / 9.0), 128 + 90 * np.cos(yy / 7.0), (xx + 2 * yy) % 256], -1) + noise
im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
variants = {
    "baseline": (im, dict(quality=90)),
    "progressive": (im, dict(quality=85, progressive=True)),
    "sub444": (im, dict(quality=95, subsampling=0)),
    "grey": (im.convert("L"), dict(quality=90)),
    "cmyk": (im.convert("CMYK"), dict(quality=90)),
}
for name, (v, kw) in variants.items():
    path = f"{d}/{name}.jpg"
    v.save(path, **kw)
    open(f"{d}/{name}.rgb", "wb").write(np.asarray(Image.open(path).convert("RGB")).tobytes())
data = open(f"{d}/baseline.jpg", "rb").read()
open(f"{d}/truncated.jpg", "wb").write(data[: len(data) // 2])
"#;

#[test]
fn jpegs_decode_as_pillow_decodes_them() {
    let tmp = tempfile::tempdir().unwrap();
    common::venv_python(&[std::ffi::OsStr::new("-c"), WRITE.as_ref(), tmp.path().as_os_str()]);
    for name in ["baseline", "progressive", "sub444", "grey", "cmyk"] {
        let img = decode_rgb(&tmp.path().join(format!("{name}.jpg"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        let pil = std::fs::read(tmp.path().join(format!("{name}.rgb"))).unwrap();
        assert_eq!((img.channels, img.height, img.width), (3, 120, 160), "{name}");
        let (h, w) = (img.height, img.width);
        let mut total = 0u64;
        let mut worst = 0u8;
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let d = img.pixel(c, y, x).abs_diff(pil[(y * w + x) * 3 + c]);
                    total += u64::from(d);
                    worst = worst.max(d);
                }
            }
        }
        let mean = total as f64 / (3 * h * w) as f64;
        assert!(mean < 1.0, "{name}: mean absolute difference from Pillow {mean:.3} (largest {worst})");
    }
    let truncated = tmp.path().join("truncated.jpg");
    let err = decode_rgb(&truncated).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("truncated.jpg"), "{err}");
}

/// A 901×703 photo-like image (odd sizes: the last iMCU and the scaled sizes round up) as
/// 4:2:0, progressive, 4:4:4 and grey JPEGs, and for each 1/s in 1, 1/2, 1/4, 1/8 Pillow's
/// `draft` decode (libjpeg's DCT scaling, the same as samix's) as `<name>_<s>.rgb`.
const WRITE_LARGE: &str = r#"
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
yy, xx = np.mgrid[0:703, 0:901]
rng = np.random.default_rng(1)
img = np.stack([128 + 90 * np.sin(xx / 23.0 + yy / 31.0), 128 + 90 * np.cos(yy / 17.0), (xx // 3 + yy // 5) % 256], -1)
img = img + rng.normal(0, 12, img.shape)
im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
variants = {"sub420": (im, dict(quality=90)), "progressive": (im, dict(quality=85, progressive=True)),
            "sub444": (im, dict(quality=95, subsampling=0)), "grey": (im.convert("L"), dict(quality=90))}
for name, (v, kw) in variants.items():
    v.save(f"{d}/{name}.jpg", **kw)
    for s in (1, 2, 4, 8):
        p = Image.open(f"{d}/{name}.jpg")
        p.draft("RGB" if p.mode != "L" else "L", (901 // s, 703 // s))
        p = p.convert("RGB")
        assert p.size == ((901 + s - 1) // s, (703 + s - 1) // s), (name, s, p.size)
        open(f"{d}/{name}_{s}.rgb", "wb").write(np.asarray(p).tobytes())
"#;

/// Whether this build decodes JPEGs in part; a build without libjpeg-turbo fails the tests that
/// need it unless `SAMIX_ALLOW_NO_LIBJPEG=1` says that is expected (then they say they skipped).
fn built_with_libjpeg() -> bool {
    if samix::data::jpeg::PARTIAL_DECODING {
        return true;
    }
    let allowed = std::env::var("SAMIX_ALLOW_NO_LIBJPEG").is_ok_and(|v| v == "1");
    assert!(allowed, "this build has no libjpeg-turbo (install libjpeg62-turbo-dev, see build.rs)");
    eprintln!("skipped: built without libjpeg-turbo and SAMIX_ALLOW_NO_LIBJPEG=1");
    false
}

/// Mean and largest absolute difference between a decoded region and the same pixels of a
/// Pillow decode (HWC bytes of width `full_w`), the region starting at (`top`, `left`).
fn region_vs_pillow(img: &samix::data::RawImage, pil: &[u8], full_w: usize, top: usize, left: usize) -> (f64, u8) {
    let (mut total, mut worst) = (0u64, 0u8);
    for y in 0..img.height {
        for x in 0..img.width {
            for c in 0..3 {
                let d = img.pixel(c, y, x).abs_diff(pil[((top + y) * full_w + left + x) * 3 + c]);
                total += u64::from(d);
                worst = worst.max(d);
            }
        }
    }
    (total as f64 / (3 * img.height * img.width) as f64, worst)
}

#[test]
fn partial_and_downscaled_jpeg_regions_match_pillows_draft_decode() {
    use samix::data::jpeg::{decode_region, header, ScaledRegion};
    if !built_with_libjpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    common::venv_python(&[std::ffi::OsStr::new("-c"), WRITE_LARGE.as_ref(), tmp.path().as_os_str()]);
    for name in ["sub420", "progressive", "sub444", "grey"] {
        let bytes = std::fs::read(tmp.path().join(format!("{name}.jpg"))).unwrap();
        let h = header(&bytes).unwrap();
        assert_eq!((h.width, h.height), (901, 703), "{name}");
        for scale in [1usize, 2, 4, 8] {
            let pil = std::fs::read(tmp.path().join(format!("{name}_{scale}.rgb"))).unwrap();
            let (sw, sh) = (901usize.div_ceil(scale), 703usize.div_ceil(scale));
            // The whole image, a region in the middle off every iMCU boundary, one touching the
            // bottom-right corner, one row.
            let regions =
                [(0, 0, sh, sw), (sh / 3 + 1, sw / 4 + 3, sh / 3, sw / 3), (sh - 5, sw - 7, 5, 7), (9, 0, 1, sw)];
            for (top, left, height, width) in regions {
                let region = ScaledRegion { scale, top, left, height, width };
                let got = decode_region(&bytes, h, region).unwrap_or_else(|e| panic!("{name} {region:?}: {e}"));
                let got = got.into_planar();
                assert_eq!((got.channels, got.height, got.width), (3, height, width), "{name} {region:?}");
                let (mean, worst) = region_vs_pillow(&got, &pil, sw, top, left);
                assert!(mean < 0.05 && worst <= 1, "{name} 1/{scale} {region:?}: mean {mean:.4}, largest {worst}");
            }
        }
    }
    let region = ScaledRegion { scale: 1, top: 0, left: 0, height: 1, width: 1 };
    let h = samix::data::jpeg::Header { width: 1, height: 1, components: 3 };
    assert!(decode_region(b"\xFF\xD8\xFF\xE0 not a jpeg", h, region).is_err());
    // A header read differently from libjpeg's (a crafted file) is refused before decoding.
    let bytes = std::fs::read(tmp.path().join("sub420.jpg")).unwrap();
    let other = samix::data::jpeg::Header { width: 901, height: 704, components: 3 };
    let err = decode_region(&bytes, other, region).map(|_| ()).unwrap_err();
    assert!(err.contains("901x703") && err.contains("901x704"), "{err}");
}

/// Mean absolute difference of two images of one size.
fn mean_difference(a: &samix::data::RawImage, b: &samix::data::RawImage) -> f64 {
    assert_eq!((a.channels, a.height, a.width), (b.channels, b.height, b.width));
    a.data.iter().zip(&b.data).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.data.len() as f64
}

#[test]
fn the_training_pipeline_decodes_only_its_crop_and_gives_the_full_decodes_pixels() {
    use rand::SeedableRng;
    use samix::data::folder::load_image_folder;
    use samix::data::transform::Pipeline;
    use samix::data::{AugmentConfig, Dataset, Interpolation};
    if !built_with_libjpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    common::venv_python(&[std::ffi::OsStr::new("-c"), WRITE_LARGE.as_ref(), tmp.path().as_os_str()]);
    for split in ["train/a", "val/a"] {
        let dir = tmp.path().join(split);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["sub420", "progressive", "sub444", "grey"] {
            std::fs::copy(tmp.path().join(format!("{name}.jpg")), dir.join(format!("{name}.jpg"))).unwrap();
        }
    }
    let (train, _) = load_image_folder(tmp.path()).unwrap();
    let (mut worst_full, mut worst_scaled) = (0f64, 0f64);
    for interpolation in [Interpolation::Bilinear, Interpolation::Bicubic] {
        for scaled_decode in [false, true] {
            let augment = AugmentConfig {
                image_size: Some(224),
                random_resized_crop: true,
                rrc_interpolation: interpolation,
                hflip: true,
                scaled_decode,
                ..Default::default()
            };
            let pipeline = Pipeline::train(&augment, None, &[0.5; 3], &[0.5; 3]);
            for index in 0..train.len() {
                for seed in 0..6 {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    let part = pipeline.load_and_apply(&train, index, &mut rng).unwrap();
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    let whole = pipeline.apply(train.load(index).unwrap(), &mut rng);
                    let d = mean_difference(&part, &whole);
                    if scaled_decode {
                        worst_scaled = worst_scaled.max(d);
                    } else {
                        worst_full = worst_full.max(d);
                    }
                }
            }
        }
    }
    // Full resolution: the same window and resampling, only the decoders differ (libjpeg-turbo
    // against zune-jpeg's whole-image decode, each within a grey level of Pillow's).
    assert!(worst_full < 1.0, "partial decode at full resolution vs whole decode: mean difference {worst_full:.3}");
    // Downscaled in the DCT: a box-filtered image resampled, against the full image resampled
    // without antialiasing; the bound is what a 6× shrink of this noisy image gives.
    assert!(worst_scaled < 8.0, "scaled decode vs whole decode: mean difference {worst_scaled:.3}");
    eprintln!("mean difference from the whole-image path: full resolution {worst_full:.3}, scaled {worst_scaled:.3}");
}

#[test]
fn unreadable_images_stop_the_epoch_or_are_skipped_and_named_as_the_config_says() {
    use samix::data::folder::load_image_folder;
    use samix::data::loader::{Loader, LoaderConfig};
    use samix::data::transform::Pipeline;
    use samix::data::{AugmentConfig, BadImages};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    common::venv_python(&[std::ffi::OsStr::new("-c"), WRITE.as_ref(), tmp.path().as_os_str()]);
    for split in ["train/a", "train/b", "val/a"] {
        std::fs::create_dir_all(tmp.path().join(split)).unwrap();
    }
    let put = |from: &str, to: &str| std::fs::copy(tmp.path().join(from), tmp.path().join(to)).map(drop).unwrap();
    for (i, name) in ["baseline", "progressive", "sub444", "grey", "cmyk"].iter().enumerate() {
        put(&format!("{name}.jpg"), &format!("train/{}/{name}.jpg", ["a", "b"][i % 2]));
    }
    put("truncated.jpg", "train/a/truncated.jpg");
    std::fs::write(tmp.path().join("train/b/notes.jpg"), "not an image, a text file named .jpg").unwrap();
    put("baseline.jpg", "val/a/baseline.jpg");
    let (train, _) = load_image_folder(tmp.path()).unwrap();
    let train: Arc<dyn samix::data::Dataset> = Arc::new(train);
    let augment = AugmentConfig { image_size: Some(32), random_resized_crop: true, ..Default::default() };
    let loader = |bad| {
        let pipeline = Pipeline::train(&augment, None, &[0.5; 3], &[0.5; 3]);
        let lc = LoaderConfig { batch_size: 4, workers: 2, prefetch: 1, shuffle: true, drop_last: false, seed: 1 };
        Loader::new(train.clone(), pipeline, lc, tch::Device::Cpu).with_bad_images(bad)
    };
    // Stop (the default): the epoch ends at the first bad file, naming it.
    let err = loader(BadImages::Stop).epoch(0).find_map(|b| b.err()).map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("truncated.jpg") || err.contains("notes.jpg"), "{err}");
    // Skip: every good image arrives (the grey and CMYK ones included), the two bad ones are named.
    let mut epoch = loader(BadImages::Skip).epoch(0);
    let images: usize = (&mut epoch).map(|b| b.unwrap().len()).sum();
    assert_eq!(images, 5);
    let skipped = epoch.skipped();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped.iter().any(|e| e.contains("truncated.jpg")) && skipped.iter().any(|e| e.contains("notes.jpg")));
}
