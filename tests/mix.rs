//! Mixing policies: label weights, areas, determinism; losses against hand-computed values;
//! the learning-rate schedule and the SGD update against their formulas.
use rand::SeedableRng;
use samix::config::MixConfig;
use samix::loss::{cross_entropy, mixup_cross_entropy, soft_cross_entropy};
use samix::mix::{cutmix_box, paste_box, CutMix, CutmixConfig, MixPolicy, MixUp, MixedTargets, MixupConfig};
use samix::optim::{CosineSchedule, Optimizer};
use samix::optim::{OptimConfig, ScheduleConfig};
use samix::rng::SamixRng;
use samix::train::input_policy;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Batch whose sample n is the constant image n+1 and whose label is n.
fn indexed_batch(n: i64, h: i64, w: i64) -> (Tensor, Tensor) {
    let vals = Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0;
    (vals.view([n, 1, 1, 1]).expand([n, 3, h, w], false).contiguous(), Tensor::arange(n, (Kind::Int64, Device::Cpu)))
}

fn rng(seed: u64) -> SamixRng {
    SamixRng::seed_from_u64(seed)
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}
fn to_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

#[test]
fn mixup_pixels_and_labels_use_the_same_lambda() {
    let (x, y) = indexed_batch(16, 4, 4);
    for per_sample in [false, true] {
        let p = MixUp::new(1.0, per_sample).unwrap();
        let out = p.mix(&x, &y, &mut rng(5));
        let (lam, yb, ya) = (to_f64(&out.targets.lam), to_i64(&out.targets.y_b), to_i64(&out.targets.y_a));
        assert_eq!(ya, to_i64(&y));
        let mut sorted = yb.clone();
        sorted.sort();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>(), "pairing is a permutation");
        for n in 0..16 {
            assert!((0.0..=1.0).contains(&lam[n]));
            let expected = lam[n] * (n as f64 + 1.0) + (1.0 - lam[n]) * (yb[n] as f64 + 1.0);
            let got = to_f64(&out.images.get(n as i64));
            assert!(got.iter().all(|v| (v - expected).abs() < 1e-5), "sample {n}");
        }
        let distinct = lam.iter().map(|l| (l * 1e6) as i64).collect::<std::collections::BTreeSet<_>>().len();
        assert_eq!(distinct > 1, per_sample, "per-sample λ differs across samples, batch λ does not");
        // Dense targets: weights in [0,1] summing to 1 per row, λ on y_a.
        let dense = out.targets.to_dense(16, 0.0);
        let sums = to_f64(&dense.sum_dim_intlist(1, false, Kind::Double));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
        for n in 0..16usize {
            let row = to_f64(&dense.get(n as i64));
            let want_a = if yb[n] == n as i64 { 1.0 } else { lam[n] };
            assert!((row[n] - want_a).abs() < 1e-6);
        }
    }
    // Same seed, same output; another seed, another λ.
    let p = MixUp::new(0.4, false).unwrap();
    let (a, b, c) = (p.mix(&x, &y, &mut rng(9)), p.mix(&x, &y, &mut rng(9)), p.mix(&x, &y, &mut rng(10)));
    assert!(a.images.equal(&b.images) && a.targets.y_b.equal(&b.targets.y_b));
    assert!(!a.images.equal(&c.images));
}

#[test]
fn cutmix_lambda_is_the_kept_area_to_the_pixel() {
    let (x, y) = indexed_batch(8, 32, 32);
    let p = CutMix::new(1.0).unwrap();
    for seed in 0..30 {
        let out = p.mix(&x, &y, &mut rng(seed));
        let lam = to_f64(&out.targets.lam);
        let yb = to_i64(&out.targets.y_b);
        assert!(lam.windows(2).all(|w| w[0] == w[1]), "one box per batch");
        for n in 0..8usize {
            let img = out.images.get(n as i64);
            let from_a = img.eq((n + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
            let from_b = img.eq((yb[n] + 1) as f64).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
            assert!((from_a + from_b - 1.0).abs() < 1e-9 || yb[n] == n as i64, "mask is binary");
            if yb[n] != n as i64 {
                assert!((from_a - lam[n]).abs() < 1e-9, "seed {seed}: kept area {from_a} vs λ {}", lam[n]);
            }
        }
    }
    // λ = 1 gives no box and the first image back.
    let b = cutmix_box(32, 32, 1.0, &mut rng(0));
    assert_eq!(b.area(), 0);
    let x2 = x.flip([0]);
    assert!(paste_box(&x, &x2, b).equal(&x));
}

#[test]
fn policies_validate_alpha() {
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = input_policy(&MixConfig::Mixup(MixupConfig { alpha, per_sample: false }), tch::Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mix.alpha"), "{err}");
        assert!(input_policy(&MixConfig::Cutmix(CutmixConfig { alpha, no_repeat: false }), tch::Device::Cpu).is_err());
    }
    assert!(input_policy(&MixConfig::default(), tch::Device::Cpu).is_ok());
}

#[test]
fn losses_match_hand_computed_values() {
    // logits for 2 samples over 3 classes
    let z = Tensor::from_slice(&[1.0f32, 2.0, 0.5, 0.0, 0.0, 3.0]).view([2, 3]);
    let lse = |r: [f64; 3]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
    let (r0, r1) = ([1.0, 2.0, 0.5], [0.0, 0.0, 3.0]);
    let ce = |r: [f64; 3], k: usize| lse(r) - r[k];
    let t = MixedTargets {
        y_a: Tensor::from_slice(&[0i64, 2]),
        y_b: Tensor::from_slice(&[1i64, 0]),
        lam: Tensor::from_slice(&[0.7f32, 0.25]),
    };
    let want = ((0.7 * ce(r0, 0) + 0.3 * ce(r0, 1)) + (0.25 * ce(r1, 2) + 0.75 * ce(r1, 0))) / 2.0;
    let got = mixup_cross_entropy(&z, &t, 0.0).double_value(&[]);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // Label smoothing ε: (1−ε)·CE + ε·mean over classes of −log p.
    let eps = 0.1;
    let smooth = |r: [f64; 3], k: usize| (1.0 - eps) * ce(r, k) + eps * (0..3).map(|c| ce(r, c)).sum::<f64>() / 3.0;
    let want = (smooth(r0, 0) + smooth(r1, 2)) / 2.0;
    let got = cross_entropy(&z, &Tensor::from_slice(&[0i64, 2]), eps).double_value(&[]);
    assert!((got - want).abs() < 1e-5);
    // Dense soft targets give the same value as the (y_a, y_b, λ) form, smoothing included.
    let dense = soft_cross_entropy(&z, &t.to_dense(3, eps)).double_value(&[]);
    let pair = mixup_cross_entropy(&z, &t, eps).double_value(&[]);
    assert!((dense - pair).abs() < 1e-5, "{dense} vs {pair}");
}

#[test]
fn cosine_schedule_and_warmup() {
    let s = CosineSchedule::new(0.1, 200, &ScheduleConfig::default());
    assert_eq!(s.lr(0, 0, 500), 0.1);
    assert!((s.lr(100, 10, 500) - 0.05).abs() < 1e-12);
    assert!((s.lr(50, 499, 500) - 0.1 * (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0).abs() < 1e-12);
    let s = CosineSchedule::new(0.1, 400, &ScheduleConfig { min_lr: 0.05, ..Default::default() });
    assert!(
        (s.lr(399, 0, 1) - (0.05 + 0.05 * (1.0 + (std::f64::consts::PI * 399.0 / 400.0).cos()) / 2.0)).abs() < 1e-12
    );
    let s =
        CosineSchedule::new(0.1, 10, &ScheduleConfig { warmup_epochs: 2.0, warmup_ratio: 0.0, ..Default::default() });
    assert_eq!(s.lr(0, 0, 100), 0.0);
    let mid = s.lr(1, 0, 100); // halfway through warm-up, towards the epoch-1 cosine value
    let cos1 = 0.1 * (1.0 + (std::f64::consts::PI / 10.0).cos()) / 2.0;
    assert!((mid - cos1 * 0.5).abs() < 1e-12);
    assert!((s.lr(2, 0, 100) - 0.1 * (1.0 + (std::f64::consts::PI * 0.2).cos()) / 2.0).abs() < 1e-12);
}

#[test]
fn sgd_matches_torch_update_rule() {
    for nesterov in [false, true] {
        let vs = VarStore::new(Device::Cpu);
        let p = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let cfg = OptimConfig::sgd(0.1, 0.9, 0.01, nesterov);
        let mut sgd = Optimizer::new(&vs, &cfg);
        // loss = Σ w² → grad = 2w. Reference by hand (torch.optim.SGD semantics).
        let (mut w, mut buf): ([f64; 2], Option<[f64; 2]>) = ([1.0, -2.0], None);
        for _ in 0..3 {
            sgd.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            sgd.step(0.1).unwrap();
            for i in 0..2 {
                let d = 2.0 * w[i] + 0.01 * w[i];
                let b = match buf {
                    None => d,
                    Some(b) => 0.9 * b[i] + d,
                };
                let mut nb = buf.unwrap_or([0.0; 2]);
                nb[i] = b;
                buf = Some(nb);
                let step = if nesterov { d + 0.9 * b } else { b };
                w[i] -= 0.1 * step;
            }
            let got = Vec::<f64>::try_from(&p.to_kind(Kind::Double)).unwrap();
            assert!(
                (got[0] - w[0]).abs() < 1e-5 && (got[1] - w[1]).abs() < 1e-5,
                "nesterov={nesterov}: {got:?} vs {w:?}"
            );
        }
        assert_eq!(sgd.state().len(), 1);
    }
}

/// A bad α is blamed on `--alpha`, whatever the policy (a NaN once came back as a TOML error on
/// `--policy`, issue 24 R12).
#[test]
fn a_bad_alpha_is_blamed_on_alpha() {
    for (policy, checkpoint) in [("mixup", None), ("cutmix", None), ("samix_p", Some(std::path::Path::new("run")))] {
        for alpha in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            let err = samix::config::MixConfig::named(policy, Some(alpha), checkpoint).unwrap_err().to_string();
            assert!(err.contains("--alpha") && !err.contains("--policy"), "{policy} α {alpha}: {err}");
        }
    }
}

/// `train.linear_probe` without a backbone to freeze is refused, naming the key (it froze a
/// randomly initialised network and reported its probe, issue 24 R11).
#[test]
fn a_linear_probe_needs_a_backbone() {
    let text =
        "[data]\ndataset = \"fashion_mnist\"\n[model]\narch = \"resnet18\"\n[train]\nepochs = 1\nlinear_probe = true\n";
    let err = samix::config::TrainConfig::parse(text, &[]).unwrap_err().to_string();
    assert!(err.contains("train.linear_probe") && err.contains("model.init_from"), "{err}");
    let with = samix::config::TrainConfig::parse(text, &["model.init_from=\"weights.safetensors\"".to_string()]);
    assert!(with.is_ok(), "{:?}", with.err());
}
