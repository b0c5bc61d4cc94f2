//! RandAugment (issue 25) against timm 1.0.28 on Pillow 13: every operation gives timm's bytes
//! on the same image (noise, smooth, narrow-range and flat images, odd sizes), the magnitude →
//! argument rules give timm's arguments, and the draws follow the policy's distribution.
mod common;
use rand::SeedableRng;
use samix::data::randaug::{draw_ops, Kind, Op, RandAugmentConfig, RandAugmentPolicy};
use samix::data::RawImage;

/// Writes the test images (`<name>.rgb`, HWC) and, for each operation of a list, timm's output
/// (`<name>_<index>.rgb`), and prints a JSON manifest: the images' sizes, the operations, and
/// timm's level → argument values.
const ORACLE: &str = r#"
import sys, json, random, numpy as np
from PIL import Image
from timm.data import auto_augment as aa
d = sys.argv[1]
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:47, 0:61]
images = {
    "noise": rng.integers(0, 256, (29, 37, 3), dtype=np.uint8),
    "smooth": np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8),
    "narrow": np.clip(rng.normal(120, 9, (33, 20, 3)), 0, 255).astype(np.uint8),
    "flat": np.full((8, 9, 3), 77, np.uint8),
}
fill = (124, 116, 104)
kw = dict(fillcolor=fill, resample=Image.BICUBIC)
ops = [("AutoContrast", None), ("Equalize", None), ("Invert", None), ("Posterize", 1), ("Posterize", 2),
       ("Posterize", 6), ("Solarize", 26), ("Solarize", 128), ("Solarize", 0), ("SolarizeAdd", 99)]
ops += [(n, f) for n in ("Color", "Contrast", "Brightness", "Sharpness") for f in (0.1, 0.19, 0.55, 1.0, 1.4499999, 1.81, 1.9)]
ops += [(n, f) for n in ("ShearX", "ShearY") for f in (0.27, -0.27, -0.3, 0.0)]
ops += [(n, f) for n in ("TranslateXRel", "TranslateYRel") for f in (0.405, -0.405, 0.131)]
ops += [("Rotate", a) for a in (27.0, -27.0, 13.7, 0.0, -3.0)]
manifest = {"images": {}, "ops": ops, "levels": {}}
for name, arr in images.items():
    open(f"{d}/{name}.rgb", "wb").write(arr.tobytes())
    manifest["images"][name] = arr.shape[:2]
    im = Image.fromarray(arr)
    for i, (op, arg) in enumerate(ops):
        args = () if arg is None else (arg,)
        out = aa.NAME_TO_OP[op](im, *args, **kw)
        open(f"{d}/{name}_{i}.rgb", "wb").write(np.asarray(out.convert("RGB")).tobytes())
hp = dict(aa._HPARAMS_DEFAULT, translate_pct=0.45)
for op in aa._RAND_INCREASING_TRANSFORMS:
    f = aa.LEVEL_TO_ARG[op]
    if f is None:
        continue
    vals = []
    for m in (0.0, 3.3, 7.4999, 7.5, 9.0, 10.0):
        random.seed(1)
        vals.append([m, abs(f(m, hp)[0])])
    manifest["levels"][op] = vals
print(json.dumps(manifest))
"#;

fn hwc_to_chw(hwc: &[u8], h: usize, w: usize) -> RawImage {
    let mut data = vec![0u8; 3 * h * w];
    for (i, px) in hwc.chunks_exact(3).enumerate() {
        for c in 0..3 {
            data[c * h * w + i] = px[c];
        }
    }
    RawImage::new(3, h, w, data)
}

/// timm's operation name and argument as samix's [`Op`].
fn op_from(name: &str, arg: Option<f64>) -> Op {
    let a = arg.unwrap_or(0.0);
    match name {
        "AutoContrast" => Op::AutoContrast,
        "Equalize" => Op::Equalize,
        "Invert" => Op::Invert,
        "Posterize" => Op::Posterize(a as u32),
        "Solarize" => Op::Solarize(a as u32),
        "SolarizeAdd" => Op::SolarizeAdd(a as u32),
        "Color" => Op::Color(a),
        "Contrast" => Op::Contrast(a),
        "Brightness" => Op::Brightness(a),
        "Sharpness" => Op::Sharpness(a),
        "ShearX" => Op::ShearX(a),
        "ShearY" => Op::ShearY(a),
        "TranslateXRel" => Op::TranslateX(a),
        "TranslateYRel" => Op::TranslateY(a),
        "Rotate" => Op::Rotate(a),
        other => panic!("no samix operation for timm's {other}"),
    }
}

fn oracle() -> (tempfile::TempDir, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let out = common::venv_python(&[std::ffi::OsStr::new("-c"), ORACLE.as_ref(), tmp.path().as_os_str()]);
    let manifest = serde_json::from_slice(&out).unwrap();
    (tmp, manifest)
}

#[test]
fn every_operation_gives_timms_bytes() {
    let (tmp, manifest) = oracle();
    let fill = [124u8, 116, 104];
    let ops = manifest["ops"].as_array().unwrap();
    let mut checked = 0;
    for (name, size) in manifest["images"].as_object().unwrap() {
        let (h, w) = (size[0].as_u64().unwrap() as usize, size[1].as_u64().unwrap() as usize);
        let img = hwc_to_chw(&std::fs::read(tmp.path().join(format!("{name}.rgb"))).unwrap(), h, w);
        for (i, op) in ops.iter().enumerate() {
            let samix_op = op_from(op[0].as_str().unwrap(), op[1].as_f64());
            let want = hwc_to_chw(&std::fs::read(tmp.path().join(format!("{name}_{i}.rgb"))).unwrap(), h, w);
            let got = samix_op.apply(&img, &fill);
            let wrong = got.data.iter().zip(&want.data).filter(|(a, b)| a != b).count();
            assert_eq!(wrong, 0, "{name}: {samix_op:?} differs from timm in {wrong} of {} bytes", want.data.len());
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * ops.len());
}

#[test]
fn magnitudes_become_timms_arguments() {
    let (_tmp, manifest) = oracle();
    let policy = RandAugmentPolicy::TimmIncreasing;
    let levels = manifest["levels"].as_object().unwrap();
    assert_eq!(levels.len(), 12, "timm's increasing ops with an argument");
    for (name, values) in levels {
        let kind = match name.as_str() {
            "Rotate" => Kind::Rotate,
            "PosterizeIncreasing" => Kind::Posterize,
            "SolarizeIncreasing" => Kind::Solarize,
            "SolarizeAdd" => Kind::SolarizeAdd,
            "ColorIncreasing" => Kind::Color,
            "ContrastIncreasing" => Kind::Contrast,
            "BrightnessIncreasing" => Kind::Brightness,
            "SharpnessIncreasing" => Kind::Sharpness,
            "ShearX" => Kind::ShearX,
            "ShearY" => Kind::ShearY,
            "TranslateXRel" => Kind::TranslateX,
            "TranslateYRel" => Kind::TranslateY,
            other => panic!("unexpected timm op {other}"),
        };
        for pair in values.as_array().unwrap() {
            let (m, want) = (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap());
            let got = match policy.op(kind, m / 10.0, false) {
                Op::Rotate(v) | Op::ShearX(v) | Op::ShearY(v) | Op::TranslateX(v) | Op::TranslateY(v) => v.abs(),
                Op::Color(v) | Op::Contrast(v) | Op::Brightness(v) | Op::Sharpness(v) => v,
                Op::Posterize(v) | Op::Solarize(v) | Op::SolarizeAdd(v) => f64::from(v),
                other => panic!("{other:?} has no argument"),
            };
            // timm draws the sign of the enhancements inside: compare the unsigned side.
            let want =
                if matches!(kind, Kind::Color | Kind::Contrast | Kind::Brightness | Kind::Sharpness) && want < 1.0 {
                    2.0 - want
                } else {
                    want
                };
            assert!((got - want).abs() < 1e-12, "{name} at magnitude {m}: samix {got}, timm {want}");
        }
    }
}

#[test]
fn the_draws_follow_the_policys_distribution() {
    let cfg = RandAugmentConfig::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let images = 40_000;
    let (mut applied, mut rotations, mut black_posterize, mut posterize) = (0usize, Vec::new(), 0usize, 0usize);
    let mut negative = 0usize;
    for _ in 0..images {
        for op in draw_ops(&cfg, &mut rng) {
            applied += 1;
            match op {
                Op::Rotate(deg) => {
                    rotations.push(deg.abs());
                    negative += usize::from(deg < 0.0);
                }
                Op::Posterize(bits) => {
                    posterize += 1;
                    black_posterize += usize::from(bits == 0);
                }
                _ => {}
            }
        }
    }
    // 2 ops at probability 1/2: one applied per image on average; each of 15 ops 1/15 of them.
    let per_image = applied as f64 / images as f64;
    assert!((per_image - 1.0).abs() < 0.02, "{per_image} operations per image");
    let share = rotations.len() as f64 / applied as f64;
    assert!((share - 1.0 / 15.0).abs() < 0.006, "rotation share {share}");
    // |angle| = 3·clip(N(9, 0.5), 0, 10): mean just under 27°, never above 30°; half negative.
    let mean = rotations.iter().sum::<f64>() / rotations.len() as f64;
    assert!((mean - 26.97).abs() < 0.1 && rotations.iter().all(|&a| a <= 30.0), "mean |rotation| {mean}");
    let neg = negative as f64 / rotations.len() as f64;
    assert!((neg - 0.5).abs() < 0.03, "negative share {neg}");
    // 0 bits (black) when the magnitude clips to 10: P(N(9, 0.5) ≥ 10) = 2.3%.
    let black = black_posterize as f64 / posterize as f64;
    assert!((black - 0.0228).abs() < 0.01, "0-bit posterize share {black}");
}

#[test]
fn zero_bit_posterize_is_black_and_the_config_is_checked() {
    let img = RawImage::new(3, 2, 2, (0..12).map(|v| v * 20).collect());
    assert!(Op::Posterize(0).apply(&img, &[0; 3]).data.iter().all(|&v| v == 0));
    assert_eq!(Op::Posterize(8).apply(&img, &[0; 3]), img);
    for (bad, key) in [
        (RandAugmentConfig { prob: 1.5, ..Default::default() }, "prob"),
        (RandAugmentConfig { magnitude: 11.0, ..Default::default() }, "magnitude"),
        (RandAugmentConfig { num_ops: 0, ..Default::default() }, "num_ops"),
        (RandAugmentConfig { magnitude_std: -1.0, ..Default::default() }, "magnitude_std"),
    ] {
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains(&format!("data.augment.randaugment.{key}")), "{err}");
    }
    let fixmatch = RandAugmentPolicy::Fixmatch;
    assert_eq!(fixmatch.kinds().len(), 14);
    // The reference's ranges at its CIFAR-224 magnitude 7: 1 ± 0.68, 6 bits, 21°, threshold 76.8.
    assert!(matches!(fixmatch.op(Kind::Brightness, 0.7, false), Op::Brightness(f) if (f - 1.68).abs() < 1e-12));
    assert_eq!(fixmatch.op(Kind::Posterize, 0.7, false), Op::Posterize(6));
    assert!(matches!(fixmatch.op(Kind::Rotate, 0.7, true), Op::Rotate(d) if (d + 21.0).abs() < 1e-12));
    assert_eq!(fixmatch.op(Kind::Solarize, 0.7, false), Op::Solarize(77));
}

/// timm's RandomErasing(0.25, mode='pixel') on 4,000 sentinel images of 3×224×224: how often it
/// erases, the erased area fraction and log aspect (height/width) on average, and the noise's
/// mean and std in normalised units.
const ERASING_ORACLE: &str = r#"
import json, math, random, torch
from timm.data.random_erasing import RandomErasing
random.seed(0); torch.manual_seed(0)
er = RandomErasing(probability=0.25, mode="pixel", max_count=1, device="cpu")
n, erased, areas, aspects, noise = 4000, 0, [], [], []
for _ in range(n):
    x = torch.full((3, 224, 224), 1000.0)
    er(x)
    hit = (x[0] != 1000.0)
    if hit.any():
        erased += 1
        rows, cols = hit.any(1).nonzero(), hit.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        areas.append(h * w / 224 / 224); aspects.append(math.log(h / w))
        noise.append(x[:, hit].flatten())
z = torch.cat(noise)
print(json.dumps({"rate": erased / n, "area": sum(areas) / len(areas), "log_aspect": sum(aspects) / len(aspects),
                  "noise_mean": z.mean().item(), "noise_std": z.std().item()}))
"#;

#[test]
fn random_erasing_draws_as_timms_and_fills_with_the_datasets_noise() {
    use samix::data::erasing::{draw_rectangle, erase, RandomErasingConfig};
    let out = common::venv_python(&["-c", ERASING_ORACLE]);
    let timm: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let cfg = RandomErasingConfig::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let n = 40_000;
    let rects: Vec<_> = (0..n).filter_map(|_| draw_rectangle(&cfg, 224, 224, &mut rng)).collect();
    let rate = rects.len() as f64 / n as f64;
    let area = rects.iter().map(|r| (r.2 * r.3) as f64 / 224.0 / 224.0).sum::<f64>() / rects.len() as f64;
    let log_aspect = rects.iter().map(|r| (r.2 as f64 / r.3 as f64).ln()).sum::<f64>() / rects.len() as f64;
    let near = |ours: f64, key: &str, tol: f64| {
        let theirs = timm[key].as_f64().unwrap();
        assert!((ours - theirs).abs() < tol, "{key}: samix {ours:.4}, timm {theirs:.4}");
    };
    near(rate, "rate", 0.025);
    near(area, "area", 0.015);
    near(log_aspect, "log_aspect", 0.1);
    assert!(rects.iter().all(|&(t, l, h, w)| h < 224 && w < 224 && t + h <= 224 && l + w <= 224));
    // The noise: timm's N(0, 1) in normalised units is, in pixels, N(255·mean, 255·std) per channel.
    let (mean, std) = ([0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0], [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0]);
    let always = RandomErasingConfig { p: 1.0, area: [0.3, 0.3], aspect: [1.0, 1.0], ..Default::default() };
    let img = erase(RawImage::new(3, 224, 224, vec![0; 3 * 224 * 224]), &always, &mean, &std, &mut rng);
    let red: Vec<f64> = img.data[..224 * 224].iter().filter(|&&v| v > 0).map(|&v| f64::from(v)).collect();
    let m = red.iter().sum::<f64>() / red.len() as f64;
    let s = (red.iter().map(|v| (v - m).powi(2)).sum::<f64>() / red.len() as f64).sqrt();
    assert!((red.len() as f64 / (224.0 * 224.0) - 0.3).abs() < 0.01, "erased area {}", red.len());
    near((m / 255.0 - 0.485) / 0.229, "noise_mean", 0.05);
    // Bytes clip the tails (below 0 and above 255, here 3% of the draws): a narrower spread than
    // timm's unclipped floats, the one difference of erasing before normalising.
    let spread = s / 255.0 / 0.229 / timm["noise_std"].as_f64().unwrap();
    assert!((0.9..1.0).contains(&spread), "noise std {spread:.3} of timm's");
}
