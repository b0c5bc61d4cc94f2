//! Property tests of the mask-based handcrafted policies: λ equals the area the first image keeps
//! (to the pixel), masks are binary where the method says so, same seed → same output, shapes
//! kept; plus FMix's mask area, ResizeMix's pasted content and the saliency peak.
mod common;
use rand::SeedableRng;
use samix::config::MixConfig;
use samix::mix::{fourier_first_weight, spectral_residual_saliency, MixPolicy};
use samix::rng::SamixRng;
use samix::train::Policy;
use tch::{Device, Kind, Tensor};

fn indexed_batch(n: i64, h: i64, w: i64) -> (Tensor, Tensor) {
    let vals = Tensor::arange(n, (Kind::Float, Device::Cpu)) + 1.0;
    (vals.view([n, 1, 1, 1]).expand([n, 3, h, w], false).contiguous(), Tensor::arange(n, (Kind::Int64, Device::Cpu)))
}

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

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
            let mask = out.first_weight.as_ref().expect("mask policies report their mask");
            let m = f64s(mask);
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

mod feature {
    use super::*;
    use samix::mix::{align, sinkhorn_plan, ManifoldMix};
    use samix::model::{Arch, ModelConfig};
    use samix::model::{Network, StagedNet};
    use tch::nn::VarStore;

    fn tiny_net() -> (VarStore, Network) {
        tch::manual_seed(5);
        let vs = VarStore::new(Device::Cpu);
        let cfg =
            ModelConfig { base_width: Some(8), blocks: Some(vec![1, 1, 1, 1]), ..ModelConfig::new(Arch::Resnet18) };
        let net = Network::new(&vs.root(), &cfg, 3, 10).unwrap();
        // Non-zero residual branches, so every stage changes its input.
        tch::no_grad(|| {
            for (_, mut t) in vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
                let _ = t.g_add_(&(t.randn_like() * 0.2));
            }
        });
        (vs, net)
    }

    #[test]
    fn manifoldmix_mixes_the_stage_it_says() {
        let (_vs, net) = tiny_net();
        let x = Tensor::randn([6, 3, 16, 16], (Kind::Float, Device::Cpu));
        let y = Tensor::arange(6, (Kind::Int64, Device::Cpu));
        let mut by_point = Vec::new();
        for at in 0..4usize {
            let p = ManifoldMix::new(2.0, vec![at]).unwrap();
            let out = tch::no_grad(|| p.forward(&net, &x, &y, false, &mut SamixRng::seed_from_u64(9)).unwrap());
            assert_eq!(out.mixed_at, at);
            let perm = out.targets.y_b.shallow_clone(); // labels are 0..N, so y_b is the pairing
            let lam = f64s(&out.targets.lam)[0];
            // By hand: run to the mixing point, blend with the partner, run on.
            let manual = tch::no_grad(|| {
                let mut h = if at == 0 {
                    x.shallow_clone() * lam + x.index_select(0, &perm) * (1.0 - lam)
                } else {
                    x.shallow_clone()
                };
                h = net.stem_t(&h, false);
                for i in 0..4 {
                    h = net.stage_t(i, &h, false);
                    if i + 1 == at {
                        h = &h * lam + h.index_select(0, &perm) * (1.0 - lam);
                    }
                }
                net.head(&h)
            });
            assert!(out.logits.allclose(&manual, 1e-5, 1e-5, false), "mixing point {at}");
            by_point.push(out.logits);
        }
        assert!(!by_point[1].allclose(&by_point[2], 1e-4, 1e-4, false), "different points give different outputs");
        assert!(ManifoldMix::new(2.0, vec![4])
            .unwrap()
            .forward(&net, &x, &y, false, &mut SamixRng::seed_from_u64(1))
            .is_err());
    }

    #[test]
    fn sinkhorn_plan_has_uniform_marginals_and_recovers_a_permutation() {
        let a = Tensor::randn([2, 16, 3, 3], (Kind::Float, Device::Cpu));
        // Unrelated features (another sample's): raw squared distances ~32, so an ε of that order
        // converges within the fixed 100 updates (at ε = 0.1 the plan is near a hard assignment
        // and the row marginals are only approached, as in the reference's fixed-count loop).
        let plan = sinkhorn_plan(&a, &a.flip([0]), 10.0, 100);
        assert_eq!(plan.size(), [2, 9, 9]);
        let rows = f64s(&plan.sum_dim_intlist(2, false, Kind::Double));
        let cols = f64s(&plan.sum_dim_intlist(1, false, Kind::Double));
        assert!(rows.iter().chain(&cols).all(|m| (m - 1.0 / 9.0).abs() < 1e-3), "{rows:?} {cols:?}");
        // b is a with its spatial positions shuffled: aligning b onto a (sharp ε) gives a back.
        let order = Tensor::from_slice(&[4i64, 0, 7, 2, 8, 1, 3, 6, 5]);
        let b = a.flatten(2, -1).index_select(2, &order).view([2, 16, 3, 3]);
        let back = align(&b, &a, 0.01, 200);
        assert!(back.allclose(&a, 1e-3, 1e-3, false), "max error {}", (&back - &a).abs().max().double_value(&[]));
        assert!(f64s(&back).iter().all(|v| v.is_finite()));
    }

    #[test]
    fn sinkhorn_follows_the_reference_raw_cost_no_grad_log_domain() {
        // Issue 11, item 4. b is a with its positions shuffled; at ε = 0.1 on the raw squared-L2
        // cost the plan is (P times) that permutation, with no underflow.
        let a = Tensor::randn([2, 16, 3, 3], (Kind::Float, Device::Cpu));
        let order = Tensor::from_slice(&[4i64, 0, 7, 2, 8, 1, 3, 6, 5]);
        let b = a.flatten(2, -1).index_select(2, &order).view([2, 16, 3, 3]);
        let plan = sinkhorn_plan(&a, &b, 0.1, 100) * 9.0;
        let want = Tensor::zeros([9, 9], (Kind::Float, Device::Cpu));
        for (j, &i) in [4i64, 0, 7, 2, 8, 1, 3, 6, 5].iter().enumerate() {
            let _ = want.get(i).get(j as i64).fill_(1.0);
        }
        assert!(plan.allclose(&want.expand([2, 9, 9], false), 1e-3, 1e-3, false), "{plan}");
        // The raw cost: shrinking the features softens the plan (a cost divided by its maximum,
        // as before, made the plan independent of the features' scale).
        let soft = sinkhorn_plan(&(&a * 0.05), &(&b * 0.05), 0.1, 100) * 9.0;
        assert!(soft.max().double_value(&[]) < 0.9, "a smaller cost gives a softer plan: {soft}");
        // No gradient through the plan: the target (which only shapes the plan) gets none, the
        // source gets exactly the transported values' gradient.
        let source = b.set_requires_grad(true);
        let target = a.set_requires_grad(true);
        let plan = sinkhorn_plan(&target, &source, 0.1, 100);
        assert!(!plan.requires_grad());
        align(&source, &target, 0.1, 100).sum(Kind::Float).backward();
        assert!(!target.grad().defined() || target.grad().abs().max().double_value(&[]) == 0.0);
        assert!(source.grad().defined() && source.grad().abs().max().double_value(&[]) > 0.0);
    }
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

mod graphcut {
    use super::*;
    use rand::Rng;
    use samix::mix::GridMrf;

    fn random_mrf(rng: &mut SamixRng, rows: usize, cols: usize, labels: usize) -> GridMrf {
        GridMrf {
            rows,
            cols,
            unary: (0..rows * cols).map(|_| (0..labels).map(|_| rng.gen_range(0.0..1.0)).collect()).collect(),
            pairwise: (0..labels)
                .map(|i| (0..labels).map(|j| ((i as f64 - j as f64) / (labels - 1) as f64).powi(2)).collect())
                .collect(),
            w_down: (0..(rows - 1) * cols).map(|_| rng.gen_range(0.0..0.6)).collect(),
            w_right: (0..rows * (cols - 1)).map(|_| rng.gen_range(0.0..0.6)).collect(),
        }
    }

    fn brute_force(m: &GridMrf, labels: usize) -> f64 {
        let n = m.rows * m.cols;
        (0..labels.pow(n as u32))
            .map(|mut code| {
                let l: Vec<usize> = (0..n)
                    .map(|_| {
                        let d = code % labels;
                        code /= labels;
                        d
                    })
                    .collect();
                m.energy(&l)
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn binary_cut_is_exact_and_three_labels_improve_on_every_constant_labelling() {
        let mut rng = SamixRng::seed_from_u64(3);
        for _ in 0..20 {
            let m = random_mrf(&mut rng, 3, 3, 2);
            let got = m.alpha_beta_swap(vec![0; 9], 10);
            assert!((m.energy(&got) - brute_force(&m, 2)).abs() < 1e-9, "a binary swap is one exact min cut");
        }
        for _ in 0..20 {
            let m = random_mrf(&mut rng, 2, 3, 3);
            let got = m.alpha_beta_swap(vec![1; 6], 10);
            let best_constant = (0..3).map(|l| m.energy(&[l; 6])).fold(f64::INFINITY, f64::min);
            assert!(m.energy(&got) <= best_constant + 1e-12);
            assert!(
                m.energy(&got) <= brute_force(&m, 3) * 1.5 + 1e-9,
                "close to the optimum on these fixed instances (swap moves give a local minimum)"
            );
        }
    }
}

mod puzzle {
    use super::*;
    use samix::mix::{transport_blocks, transport_plan, PuzzleMix, PuzzleMixConfig};

    #[test]
    fn transport_moves_whole_blocks_one_to_one() {
        let x = Tensor::arange(2 * 3 * 8 * 8, (Kind::Float, Device::Cpu)).view([2, 3, 8, 8]);
        let eye = Tensor::eye(16, (Kind::Float, Device::Cpu)).expand([2, 16, 16], false).contiguous();
        assert!(transport_blocks(&x, &eye, 4).equal(&x));
        // Swap blocks 0 and 5 of the 4×4 grid (2×2-pixel blocks).
        let mut order: Vec<i64> = (0..16).collect();
        order.swap(0, 5);
        let plan = Tensor::eye(16, (Kind::Float, Device::Cpu))
            .index_select(0, &Tensor::from_slice(&order))
            .expand([2, 16, 16], false)
            .contiguous();
        let moved = transport_blocks(&x, &plan, 4);
        assert!(moved.narrow(2, 0, 2).narrow(3, 0, 2).equal(&x.narrow(2, 2, 2).narrow(3, 2, 2)));
        assert!(moved.narrow(2, 2, 2).narrow(3, 2, 2).equal(&x.narrow(2, 0, 2).narrow(3, 0, 2)));
        // A plan from the greedy transport never sends two sources to one destination.
        let mask = Tensor::rand([3, 1, 4, 4], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
        let sal = Tensor::rand([3, 4, 4], (Kind::Float, Device::Cpu));
        let plan = transport_plan(&mask, &sal, 0.8);
        assert!(f64s(&plan.sum_dim_intlist(1, false, Kind::Double)).iter().all(|v| *v <= 1.0));
        assert!(f64s(&plan.sum_dim_intlist(2, false, Kind::Double)).iter().all(|v| *v <= 1.0));
    }

    #[test]
    fn puzzlemix_labels_areas_and_stays_in_range() {
        let (x, y) = indexed_batch(8, 32, 32);
        let p = PuzzleMix::new(PuzzleMixConfig::default(), vec![0.5; 3], vec![0.25; 3]).unwrap();
        for seed in 0..8 {
            let sal = Tensor::rand([8, 32, 32], (Kind::Float, Device::Cpu));
            let out = p.mix_with_saliency(&x, &y, &sal, &mut SamixRng::seed_from_u64(seed));
            let m = out.first_weight.as_ref().unwrap();
            assert!(f64s(m).iter().all(|v| *v == 0.0 || *v == 0.5 || *v == 1.0), "three labels");
            let area = f64s(&m.mean_dim(&[1i64, 2, 3][..], false, Kind::Double));
            let lam = f64s(&out.targets.lam);
            assert!(lam.iter().zip(&area).all(|(l, a)| (l - a).abs() < 1e-6 && (0.0..=1.0).contains(l)));
            let v = f64s(&out.images);
            assert!(
                v.iter().all(|v| v.is_finite() && (0.0..=8.0).contains(v)),
                "finite, within the inputs' range (0 = empty block)"
            );
            let again = p.mix_with_saliency(&x, &y, &sal, &mut SamixRng::seed_from_u64(seed));
            assert!(again.images.equal(&out.images));
        }
    }

    #[test]
    fn each_image_keeps_its_salient_spot() {
        let (x, y) = indexed_batch(4, 32, 32);
        let cfg = PuzzleMixConfig { transport: false, ..Default::default() };
        let p = PuzzleMix::new(cfg, vec![], vec![]).unwrap();
        // Sample n's saliency is one 2×2 spot in quadrant n.
        let spots = [(4i64, 4i64), (4, 26), (26, 4), (26, 26)];
        let sal = Tensor::zeros([4, 32, 32], (Kind::Float, Device::Cpu));
        for (n, (r, c)) in spots.iter().enumerate() {
            let _ = sal.get(n as i64).narrow(0, *r, 2).narrow(1, *c, 2).fill_(1.0);
        }
        for seed in 0..10 {
            let out = p.mix_with_saliency(&x, &y, &sal, &mut SamixRng::seed_from_u64(seed));
            let m = out.first_weight.unwrap();
            let perm = Vec::<i64>::try_from(out.pairing.as_ref().unwrap()).unwrap();
            for n in 0..4usize {
                if perm[n] == n as i64 {
                    continue;
                }
                let at = |(r, c): (i64, i64)| m.get(n as i64).get(0).get(r).get(c).double_value(&[]);
                assert_eq!(at(spots[n]), 1.0, "seed {seed}: sample {n} keeps its own salient spot");
                assert_eq!(
                    at(spots[perm[n] as usize]),
                    0.0,
                    "seed {seed}: sample {n} shows its partner's salient spot"
                );
            }
        }
    }
}

#[test]
fn puzzlemix_handles_28_pixel_images() {
    use samix::mix::{PuzzleMix, PuzzleMixConfig};
    let (x, y) = indexed_batch(6, 28, 28);
    let p = PuzzleMix::new(PuzzleMixConfig::default(), vec![], vec![]).unwrap();
    for seed in 0..10 {
        let sal = Tensor::rand([6, 28, 28], (Kind::Float, Device::Cpu));
        let out = p.mix_with_saliency(&x, &y, &sal, &mut SamixRng::seed_from_u64(seed));
        assert_eq!(out.images.size(), [6, 3, 28, 28]);
        let area = f64s(&out.first_weight.unwrap().mean_dim(&[1i64, 2, 3][..], false, Kind::Double));
        assert!(f64s(&out.targets.lam).iter().zip(&area).all(|(l, a)| (l - a).abs() < 1e-6));
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
    assert_eq!(MixConfig::NAMES.len(), 16, "a policy was added or removed: update docs/DESIGN.md's count");
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
        let trainer_built = ["attentivemix", "puzzlemix", "manifoldmix", "alignmix", "samix", "automix", "samix_p"];
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
