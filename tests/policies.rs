//! Property tests of the mask-based handcrafted policies: λ equals the area the first image keeps
//! (to the pixel), masks are binary where the method says so, same seed → same output, shapes
//! kept; plus FMix's mask area, ResizeMix's pasted content and the saliency peak.
use rand::SeedableRng;
use samix::config::MixConfig;
use samix::mix::{fourier_mask, spectral_residual_saliency, MixPolicy, Policy};
use samix::rng::SamixRng;
use tch::{Device, Kind, Tensor};

fn indexed_batch(n: i64, h: i64, w: i64) -> (Tensor, Tensor) {
    let vals = Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0;
    (vals.view([n, 1, 1, 1]).expand([n, 3, h, w], false).contiguous(), Tensor::arange(n, (Kind::Int64, Device::Cpu)))
}

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

fn policy(name: &str, alpha: f64) -> Policy {
    Policy::from_config(&MixConfig::from_name(name, Some(alpha)).unwrap()).unwrap()
}

#[test]
fn binary_mask_policies_label_the_kept_area() {
    let (x, y) = indexed_batch(8, 32, 32);
    for name in ["cutmix", "resizemix", "gridmix", "fmix", "saliencymix"] {
        for seed in 0..12 {
            let p = policy(name, 1.0);
            let out = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
            assert_eq!(out.images.size(), x.size(), "{name}");
            let mask = out.mask.as_ref().expect("mask policies report their mask");
            let m = f64s(mask);
            assert!(m.iter().all(|v| *v == 0.0 || *v == 1.0), "{name}: binary mask");
            let lam = f64s(&out.targets.lam);
            let yb = Vec::<i64>::try_from(&out.targets.y_b).unwrap();
            let kept_by_mask = m.iter().sum::<f64>() / m.len() as f64;
            for n in 0..8usize {
                assert!((0.0..=1.0).contains(&lam[n]));
                assert!((lam[n] - kept_by_mask).abs() < 1e-9, "{name} seed {seed}: λ {} vs mask area {kept_by_mask}", lam[n]);
                if yb[n] == n as i64 {
                    continue;
                }
                let img = out.images.get(n as i64);
                let first = img.eq((n + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                let second = img.eq((yb[n] + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
                assert!((first - lam[n]).abs() < 1e-9, "{name} seed {seed} sample {n}: first image keeps {first}, λ {}", lam[n]);
                assert!((first + second - 1.0).abs() < 1e-9, "{name}: every pixel comes from one of the two");
            }
            // The same seed gives the same batch.
            let again = p.mix(&x, &y, &mut SamixRng::seed_from_u64(seed));
            assert!(again.images.equal(&out.images) && again.targets.lam.equal(&out.targets.lam), "{name}: determinism");
        }
    }
}

#[test]
fn smoothmix_blends_with_its_blob_and_labels_the_first_image_area() {
    let (x, y) = indexed_batch(6, 32, 32);
    let out = policy("smoothmix", 0.2).mix(&x, &y, &mut SamixRng::seed_from_u64(4));
    let m = out.mask.unwrap();
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
        let m = fourier_mask(32, 32, keep, 3.0, &mut rng);
        assert_eq!(m.size(), [1, 1, 32, 32]);
        assert_eq!(m.sum(Kind::Int64).int64_value(&[]), keep);
    }
    // Low-frequency: the kept region is mostly connected blobs, so neighbouring pixels agree far
    // more often than for a random mask of the same area (≈ 50% for a random half mask).
    let m = fourier_mask(32, 32, 512, 3.0, &mut SamixRng::seed_from_u64(2));
    let right = m.narrow(3, 1, 31).eq_tensor(&m.narrow(3, 0, 31)).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    assert!(right > 0.85, "neighbour agreement {right}");
    // λ = 1 keeps the whole first image.
    let (x, y) = indexed_batch(4, 16, 16);
    let all = fourier_mask(16, 16, 256, 3.0, &mut rng);
    assert!(samix::mix::blend(&x, &x.flip([0]), &all).equal(&x));
    let _ = y;
}

#[test]
fn resizemix_pastes_the_shrunk_partner() {
    // Partners with structure (a ramp) so that the nearest resize is visible in the pasted box.
    let n = 4i64;
    let ramp = Tensor::arange(32 * 32, (Kind::Float, Device::Cpu)).view([1, 1, 32, 32]);
    let x = (ramp + Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1, 1, 1]) * 10000.0).expand([n, 3, 32, 32], false).contiguous();
    let y = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let out = policy("resizemix", 1.0).mix(&x, &y, &mut SamixRng::seed_from_u64(7));
    let first = out.mask.unwrap().squeeze();
    let rows: Vec<i64> = (0..32).filter(|&r| f64s(&first.get(r)).iter().any(|v| *v == 0.0)).collect();
    let cols: Vec<i64> = (0..32).filter(|&c| f64s(&first.select(1, c)).iter().any(|v| *v == 0.0)).collect();
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
    assert!(MixConfig::from_name("puzzlemix", None).unwrap_err().to_string().contains("unknown variant"));
    assert!(MixConfig::from_name("cutmix", Some(-1.0)).is_err());
    assert_eq!(MixConfig::from_name("mixup", None).unwrap(), MixConfig::Mixup { alpha: 1.0, per_sample: false });
    assert_eq!(MixConfig::from_name("cutmix", None).unwrap(), MixConfig::Cutmix { alpha: 0.2 });
}
