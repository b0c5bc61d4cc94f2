//! Property tests of the mask-based handcrafted policies: λ equals the area the first image keeps
//! (to the pixel), masks are binary where the method says so, same seed → same output, shapes
//! kept; plus FMix's mask area, ResizeMix's pasted content and the saliency peak.
mod common;
use common::{f64s, indexed_batch};
use rand::SeedableRng;
use samix::config::MixConfig;
use samix::mix::{fourier_first_weight, spectral_residual_saliency, MixPolicy};
use samix::rng::SamixRng;
use samix::train::Policy;
use tch::{Device, Kind, Tensor};

fn policy(name: &str, alpha: f64) -> Policy {
    samix::train::input_policy(&MixConfig::from_name(name, Some(alpha)).unwrap(), tch::Device::Cpu).unwrap()
}

#[test]
fn binary_mask_policies_label_the_kept_area() {
    let (x, y) = indexed_batch(8, 32, 32);
    for name in ["cutmix", "resizemix", "gridmix", "fmix", "saliencymix"] {
        for seed in 0..12 {
            let p = policy(name, 1.0);
            let out = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
            assert_eq!(out.images.size(), x.size(), "{name}");
            let first = out.first_weight.as_ref().expect("mask policies report their first weight");
            let m = f64s(first);
            assert!(m.iter().all(|v| *v == 0.0 || *v == 1.0), "{name}: binary mask");
            let lam = f64s(&out.targets.lam);
            let yb = Vec::<i64>::try_from(&out.targets.y_b).unwrap();
            let kept_by_mask = m.iter().sum::<f64>() / m.len() as f64;
            for n in 0..8usize {
                assert!((0.0..=1.0).contains(&lam[n]));
                assert!(
                    (lam[n] - kept_by_mask).abs() < 1e-9,
                    "{name} seed {seed}: λ {} vs mask area {kept_by_mask}",
                    lam[n]
                );
                if yb[n] == n as i64 {
                    continue;
                }
                let img = out.images.get(n as i64);
                let first = img.eq((n + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                let second = img.eq((yb[n] + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                assert!(
                    (first - lam[n]).abs() < 1e-9,
                    "{name} seed {seed} sample {n}: first image keeps {first}, λ {}",
                    lam[n]
                );
                assert!((first + second - 1.0).abs() < 1e-9, "{name}: every pixel comes from one of the two");
            }
            // The same seed gives the same batch.
            let again = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
            assert!(
                again.images.equal(&out.images) && again.targets.lam.equal(&out.targets.lam),
                "{name}: determinism"
            );
        }
    }
}

#[test]
fn smoothmix_blends_with_its_blob_and_labels_the_first_image_area() {
    let (x, y) = indexed_batch(6, 32, 32);
    let out = policy("smoothmix", 0.2).mix(&x, &y, &mut SamixRng::seed_from_u64(4));
    let m = out.first_weight.unwrap();
    let partner = x.index_select(0, out.pairing.as_ref().unwrap());
    let expected = &x * &m + &partner * (-&m + 1.0);
    assert!(out.images.allclose(&expected, 1e-6, 1e-6, false));
    let lam = f64s(&out.targets.lam);
    let area = m.mean(Kind::Double).double_value(&[]);
    assert!(lam.iter().all(|l| (l - area).abs() < 1e-6), "label weight of y_a = area of the first image");
    // The blob is soft (not binary) and peaks at weight 1 for the partner: min(first weight) = 0.
    assert!(m.min().double_value(&[]).abs() < 1e-3 && m.max().double_value(&[]) < 1.0);
}

#[test]
fn fmix_mask_keeps_exactly_k_pixels() {
    let mut rng = SamixRng::seed_from_u64(1);
    for keep in [0, 1, 300, 511, 1024] {
        let m = fourier_first_weight(32, 32, keep, 3.0, &mut rng);
        assert_eq!(m.size(), [1, 1, 32, 32]);
        assert_eq!(m.sum(Kind::Int64).int64_value(&[]), keep);
    }
    // Low-frequency: the kept region is mostly connected blobs, so neighbouring pixels agree far
    // more often than for a random mask of the same area (≈ 50% for a random half mask).
    let m = fourier_first_weight(32, 32, 512, 3.0, &mut SamixRng::seed_from_u64(2));
    let right =
        m.narrow(3, 1, 31).eq_tensor(&m.narrow(3, 0, 31)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!(right > 0.85, "neighbour agreement {right}");
    // λ = 1 keeps the whole first image.
    let (x, y) = indexed_batch(4, 16, 16);
    let all = fourier_first_weight(16, 16, 256, 3.0, &mut rng);
    assert!(samix::mix::blend(&x, &x.flip([0]), &all).equal(&x));
    let _ = y;
}

#[test]
fn resizemix_pastes_the_shrunk_partner() {
    // Partners with structure (a ramp) so that the nearest resize is visible in the pasted box.
    let n = 4i64;
    let ramp = Tensor::arange(32 * 32, (Kind::Float, Device::Cpu)).view([1, 1, 32, 32]);
    let x = (ramp + Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1, 1, 1]) * 10000.0)
        .expand([n, 3, 32, 32], false)
        .contiguous();
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let out = policy("resizemix", 1.0).mix(&x, &y, &mut SamixRng::seed_from_u64(7));
    let first = out.first_weight.unwrap().squeeze();
    let rows: Vec<i64> = (0..32).filter(|&r| f64s(&first.get(r)).contains(&0.0)).collect();
    let cols: Vec<i64> = (0..32).filter(|&c| f64s(&first.select(1, c)).contains(&0.0)).collect();
    let (y0, bh, x0, bw) = (rows[0], rows.len() as i64, cols[0], cols.len() as i64);
    let partner = x.index_select(0, out.pairing.as_ref().unwrap());
    let shrunk = partner.upsample_nearest2d([bh, bw], None, None);
    assert!(out.images.narrow(2, y0, bh).narrow(3, x0, bw).equal(&shrunk));
}

#[test]
fn saliency_peaks_on_the_object() {
    // A bright square on a dark, mildly textured background.
    let mut img = Tensor::rand([3, 32, 32], (Kind::Float, Device::Cpu)) * 0.05;
    let _ = img.narrow(1, 18, 6).narrow(2, 4, 6).fill_(1.0);
    let _ = &mut img;
    let s = spectral_residual_saliency(&img);
    assert_eq!(s.size(), [32, 32]);
    let peak = s.flatten(0, -1).argmax(0, false).int64_value(&[]);
    let (py, px) = (peak / 32, peak % 32);
    assert!((16..=25).contains(&py) && (2..=11).contains(&px), "peak at ({py}, {px})");
}

#[test]
fn policy_names_and_alphas_are_validated() {
    assert!(MixConfig::from_name("supermix", None).unwrap_err().to_string().contains("unknown variant"));
    assert!(MixConfig::from_name("attentivemix", None).unwrap_err().to_string().contains("checkpoint"));
    assert!(MixConfig::from_name("cutmix", Some(-1.0)).is_err());
    let mixup = samix::mix::MixupConfig { alpha: 1.0, per_sample: false };
    assert_eq!(MixConfig::from_name("mixup", None).unwrap(), MixConfig::Mixup(mixup));
    let cutmix = samix::mix::CutmixConfig { alpha: 0.2, no_repeat: false };
    assert_eq!(MixConfig::from_name("cutmix", None).unwrap(), MixConfig::Cutmix(cutmix));
}

mod switch {
    use super::*;
    use samix::mix::{LambdaMode, MixupCutmix};

    #[test]
    fn timm_modes_pair_with_the_flipped_batch_and_label_each_element() {
        let (x, y) = indexed_batch(8, 16, 16);
        for mode in [LambdaMode::Batch, LambdaMode::Pair, LambdaMode::Elem] {
            let p = MixupCutmix::new(0.8, 1.0, 0.8, 0.5, mode).unwrap();
            let (mut saw_cut, mut saw_blend, mut saw_keep) = (false, false, false);
            for seed in 0..40 {
                let out = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
                assert_eq!(Vec::<i64>::try_from(&out.targets.y_b).unwrap(), (0..8).rev().collect::<Vec<i64>>());
                let lam = f64s(&out.targets.lam);
                for (n, &lam_n) in lam.iter().enumerate() {
                    let img = f64s(&out.images.get(n as i64));
                    let (a, b) = ((n + 1) as f64, (8 - n) as f64);
                    let from_a = img.iter().filter(|v| (**v - a).abs() < 1e-6).count() as f64 / img.len() as f64;
                    if lam_n == 1.0 {
                        saw_keep |= from_a == 1.0;
                    } else if img.iter().all(|v| (*v - a).abs() < 1e-6 || (*v - b).abs() < 1e-6)
                        && from_a > 0.0
                        && from_a < 1.0
                    {
                        saw_cut = true;
                        assert!((from_a - lam[n]).abs() < 1e-6, "{mode:?}: cut area {from_a} vs λ {}", lam[n]);
                    } else {
                        saw_blend = true;
                        let want = lam[n] * a + (1.0 - lam[n]) * b;
                        assert!(img.iter().all(|v| (v - want).abs() < 1e-4), "{mode:?}: blend with λ {}", lam[n]);
                    }
                }
                match mode {
                    LambdaMode::Batch => assert!(lam.windows(2).all(|w| w[0] == w[1])),
                    LambdaMode::Pair => assert!((0..4).all(|i| lam[i] == lam[7 - i]), "pairs share λ: {lam:?}"),
                    LambdaMode::Elem => {}
                }
            }
            assert!(saw_cut && saw_blend && saw_keep, "{mode:?}: cut {saw_cut} blend {saw_blend} keep {saw_keep}");
        }
        assert!(MixupCutmix::new(0.0, 0.0, 1.0, 0.5, LambdaMode::Batch).is_err());
        assert!(MixupCutmix::new(0.8, 1.0, 1.5, 0.5, LambdaMode::Batch).is_err());
    }
}

/// A policy from a `[mix]` table's text (options beyond α).
fn policy_from(table: &str) -> Policy {
    let cfg: MixConfig = toml::from_str(table).unwrap();
    samix::train::input_policy(&cfg, Device::Cpu).unwrap()
}

/// Issue 11, item 7: the reference's SmoothMix (first label weighted by the blob's mean, centre on
/// a pixel corner) as an option; the default keeps the first image's area and a pixel-centred blob.
#[test]
fn smoothmix_reference_option_swaps_the_label_weight_and_moves_the_centre() {
    let (x, y) = indexed_batch(4, 16, 16);
    for (reference, seed) in [(false, 3u64), (true, 3), (false, 8), (true, 8)] {
        let p = policy_from(&format!("policy = \"smoothmix\"\nalpha = 0.2\nreference = {reference}"));
        let out = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
        let first = out.first_weight.unwrap();
        let kept = first.mean(Kind::Float).double_value(&[]);
        let lam = f64s(&out.targets.lam);
        let want = if reference { 1.0 - kept } else { kept };
        assert!(lam.iter().all(|l| (l - want).abs() < 1e-6), "reference = {reference}: λ {lam:?}, kept {kept}");
        // The blob's peak: 1 at one pixel when centred on a pixel; below 1 (no pixel at the
        // centre) when centred on a pixel corner.
        let g = (-&first + 1.0).squeeze();
        let peak = g.max().double_value(&[]);
        let at_peak = g.ge(peak - 1e-6).sum(Kind::Int64).int64_value(&[]);
        if reference {
            assert!(peak < 1.0 - 1e-4, "corner-centred blob peaks at {peak}");
        } else {
            assert_eq!(at_peak, 1);
            assert!((peak - 1.0).abs() < 1e-6);
        }
    }
}

/// Issue 11, item 7: `no_repeat` (CutMix, FMix) redraws pairings with a fixed point, as the
/// reference does; by default about two thirds of 3-image pairings have one.
#[test]
fn no_repeat_avoids_pairing_an_image_with_itself() {
    let (x, y) = indexed_batch(3, 8, 8);
    let fixed_point_share = |table: &str| {
        let p = policy_from(table);
        let mut rng = SamixRng::seed_from_u64(21);
        let with_fixed = (0..300)
            .filter(|_| {
                let perm = p.mix(&x, &y, &mut rng).pairing.unwrap();
                Vec::<i64>::try_from(&perm).unwrap().iter().enumerate().any(|(i, &j)| j == i as i64)
            })
            .count();
        with_fixed as f64 / 300.0
    };
    for name in ["cutmix", "fmix"] {
        let default = fixed_point_share(&format!("policy = \"{name}\"\nalpha = 1.0"));
        let redrawn = fixed_point_share(&format!("policy = \"{name}\"\nalpha = 1.0\nno_repeat = true"));
        assert!(default > 0.5, "{name}: {default}");
        // (2/3)^11 ≈ 1.2% of batches keep a fixed point after the reference's 10 redraws.
        assert!(redrawn < 0.05, "{name} with no_repeat: {redrawn}");
    }
}

/// Issue 11, item 7: the reference's GridMix crop. Its layout, for crops that fit and for crops
/// taller or wider than the image (negative offsets), equals an independent statement of the
/// reference's rule in numpy with Python's own slicing; and the policy with `reference = true`
/// still labels the area the first image keeps.
#[test]
fn gridmix_reference_crop_follows_python_slicing() {
    use samix::mix::{reference_grid_mask, ReferenceGrid};
    let oracle = r#"
import json, math, sys
import numpy as np
cases = json.loads(sys.argv[1])
out = []
for c in cases:
    H, W, ratio = c["h"], c["w"], c["ratio"]
    area = int(H * W * c["area"])
    cw = int(math.sqrt(area / c["aspect"]))
    ch = int(cw * c["aspect"])
    left, top = int((W - cw) * c["cx"]), int((H - ch) * c["cy"])
    holes = min(c["holes"], cw // 2)
    pw = math.ceil(cw / holes)
    ph = pw
    rows = math.ceil(ch / ph)
    hw = min(max(int(pw * ratio), 1), pw - 1)
    hh = min(max(int(ph * ratio), 1), ph - 1)
    m = np.zeros((H, W))
    for i in range(holes + 1):
        for j in range(rows + 1):
            x1, y1 = min(pw * i, cw), min(ph * j, ch)
            m[top + y1: top + min(y1 + hh, ch), left + x1: left + min(x1 + hw, cw)] = 1
    out.append(m.flatten().tolist())
print(json.dumps(out))
"#;
    let mut cases = Vec::new();
    let mut grids = Vec::new();
    for (k, (area, aspect, cy)) in
        [(1.0, 3.0, 0.6), (1.0, 3.0, 0.3), (0.9, 2.0, 0.99), (0.5, 0.5, 0.4), (0.75, 1.0, 0.5), (1.0, 0.4, 0.7)]
            .into_iter()
            .enumerate()
    {
        let g = ReferenceGrid { n_holes: 2 + k % 5, cut_area_ratio: area, cut_aspect_ratio: aspect, cx: 0.35, cy };
        let ratio = [0.5, 0.3, 0.8][k % 3];
        cases.push(serde_json::json!({"h": 16, "w": 16, "ratio": ratio, "area": area, "aspect": aspect,
            "cx": 0.35, "cy": cy, "holes": g.n_holes}));
        grids.push((g, ratio));
    }
    let json = serde_json::to_string(&cases).unwrap();
    let stdout = common::venv_python(&[std::ffi::OsStr::new("-c"), oracle.as_ref(), json.as_ref()]);
    let want: Vec<Vec<f32>> = serde_json::from_slice(&stdout).unwrap();
    let mut wrapped = false;
    for ((g, ratio), want) in grids.into_iter().zip(want) {
        let got = reference_grid_mask(16, 16, ratio, g);
        assert_eq!(got, want, "{g:?} ratio {ratio}");
        // A crop taller than the image whose top holes wrap to the bottom rows.
        wrapped |= g.cut_aspect_ratio > 2.5 && g.cy > 0.5 && got[15 * 16..].contains(&1.0);
    }
    assert!(wrapped, "a case exercises the wrap-around");
    let p = policy_from("policy = \"gridmix\"\nalpha = 1.0\nreference = true");
    let (x, y) = indexed_batch(4, 32, 32);
    for seed in 0..20 {
        let out = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
        let m = f64s(out.first_weight.as_ref().unwrap());
        assert!(m.iter().all(|v| *v == 0.0 || *v == 1.0));
        let kept = m.iter().sum::<f64>() / m.len() as f64;
        assert!((f64s(&out.targets.lam)[0] - kept).abs() < 1e-9, "seed {seed}: λ is the kept area");
    }
}

/// Every policy `MixConfig` lists reads back from its own name, writes that name, and either
/// builds as a per-batch policy from its table alone or says, naming `mix.policy`, who builds it.
#[test]
fn every_listed_policy_reads_writes_and_builds_by_its_name() {
    assert_eq!(
        MixConfig::NAMES.len(),
        17,
        "a policy was added or removed: update the test's list of trainer-built policies if needed"
    );
    for &name in MixConfig::NAMES {
        let text = match name {
            "attentivemix" => format!("policy = \"{name}\"\nalpha = 1.0\ncheckpoint = \"run\""),
            "samix_p" => format!("policy = \"{name}\"\nmixer = \"run\""),
            "none" | "mixup_cutmix" | "puzzlemix" | "samix" | "automix" => format!("policy = \"{name}\""),
            _ => format!("policy = \"{name}\"\nalpha = 1.0"),
        };
        let cfg: MixConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cfg.name(), name);
        let written = toml::to_string(&cfg).unwrap();
        assert!(written.starts_with(&format!("policy = \"{name}\"")), "{name} writes {written}");
        assert_eq!(toml::from_str::<MixConfig>(&written).unwrap(), cfg, "{name} round trip");
        cfg.check(4).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The trainer builds these (they hold a network, need the model or train a Mixer).
        let trainer_built =
            ["attentivemix", "puzzlemix", "manifoldmix", "alignmix", "transmix", "samix", "automix", "samix_p"];
        match cfg.table().build_input() {
            Ok(_) if trainer_built.contains(&name) => panic!("{name} built without the trainer"),
            Err(e) if !trainer_built.contains(&name) => panic!("{name} did not build from its table: {e}"),
            Ok(p) => {
                let x = Tensor::rand([4, 1, 8, 8], (Kind::Float, Device::Cpu));
                let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
                let mixed = p.mix(&x, &y, &mut SamixRng::seed_from_u64(0));
                assert_eq!(mixed.images.size(), x.size(), "{name}");
            }
            Err(e) => assert!(e.to_string().contains("mix.policy"), "{name}: {e}"),
        }
    }
    let unknown = toml::from_str::<MixConfig>("policy = \"supermix\"").unwrap_err().to_string();
    assert!(MixConfig::NAMES.iter().all(|n| unknown.contains(n)), "{unknown}");
}
