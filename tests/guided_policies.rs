//! The policies guided by a network or a saliency: ManifoldMix and AlignMix (hidden features,
//! Sinkhorn alignment), PuzzleMix's graph cut and block transport, on tiny inputs with hand-made
//! expectations.
mod common;
use common::{f64s, indexed_batch};
use rand::SeedableRng;
use samix::rng::SamixRng;
use tch::{Device, Kind, Tensor};

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
