//! Self-supervised pre-training's parts (issue 13): InfoNCE against hand-computed values, the key
//! queue's FIFO order, the momentum update of encoder and neck, where gradients flow in SAMix-SSL,
//! the positives of a mixed sample, the k-NN vote. Whole runs: `tests/ssl_runs.rs`.
mod common;
use common::*;
use rand::SeedableRng;
use samix::loss::contrastive::{info_nce, mixed_info_nce, pair_info_nce};
use samix::model::{ModelConfig, Network};
use samix::rng::SamixRng;
use samix::samix::{ContrastiveLoss, MixerVariant, SamixConfig, Scenario};
use samix::ssl::{Bank, MocoPaths, SslConfig, SslMixing, SslMixingChoice, SslModel, SslStepPlan};
use samix::SamixOptions;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

fn t2(rows: &[[f32; 2]]) -> Tensor {
    Tensor::from_slice(&rows.concat()).view([rows.len() as i64, 2])
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "{what}: {a} vs {b}");
}

#[test]
fn info_nce_matches_hand_computed_values() {
    // Two unit queries in 2-D, their positives, and a queue of two negatives (as columns).
    let z = t2(&[[1.0, 0.0], [0.6, 0.8]]);
    let pos = t2(&[[0.6, 0.8], [0.0, 1.0]]);
    let other = t2(&[[0.0, 1.0], [1.0, 0.0]]);
    let queue = t2(&[[1.0, 0.0], [0.0, 1.0]]).transpose(0, 1); // negatives e1, e2
    let tau = 0.5;
    // Sample 0: s = 0.6/τ = 1.2, negatives 1/τ = 2 and 0 → −1.2 + ln(e^1.2 + e^2 + e^0).
    let l0 = -1.2 + (1.2f64.exp() + 2f64.exp() + 1.0).ln();
    // Sample 1: s = 0.8/τ = 1.6, negatives 0.6/τ = 1.2 and 0.8/τ = 1.6.
    let l1 = -1.6 + (1.6f64.exp() + 1.2f64.exp() + 1.6f64.exp()).ln();
    close(info_nce(&z, &pos, &queue, tau).double_value(&[]), (l0 + l1) / 2.0, "InfoNCE");
    // Mixed: λ·InfoNCE(pos) + (1 − λ)·InfoNCE(other), λ = 0.3; other's similarities: 0, 0.6.
    let o0 = -0.0 + (1.0 + 2f64.exp() + 1.0f64).ln();
    let o1 = -1.2 + (1.2f64.exp() + 1.2f64.exp() + 1.6f64.exp()).ln();
    let lam = Tensor::from(0.3f32);
    let want = (0.3 * l0 + 0.7 * o0 + 0.3 * l1 + 0.7 * o1) / 2.0;
    close(mixed_info_nce(&z, &pos, &other, &lam, &queue, tau).double_value(&[]), want, "mixed InfoNCE");
    // Per-sample λ.
    let lams = Tensor::from_slice(&[1.0f32, 0.0]);
    close(mixed_info_nce(&z, &pos, &other, &lams, &queue, tau).double_value(&[]), (l0 + o1) / 2.0, "per-sample λ");
    // Local: a two-way softmax between the positives (1.2 vs 0 and 1.6 vs 1.2), no queue.
    let p0 = 0.3 * (-1.2 + (1.2f64.exp() + 1.0).ln()) + 0.7 * (-0.0 + (1.2f64.exp() + 1.0).ln());
    let p1 = 0.3 * (-1.6 + (1.6f64.exp() + 1.2f64.exp()).ln()) + 0.7 * (-1.2 + (1.6f64.exp() + 1.2f64.exp()).ln());
    close(pair_info_nce(&z, &pos, &other, &lam, tau).double_value(&[]), (p0 + p1) / 2.0, "local");
}

fn tiny_model() -> ModelConfig {
    ModelConfig {
        base_width: Some(4),
        blocks: Some(vec![1, 1, 1, 1]),
        ..ModelConfig::new(samix::model::Arch::Resnet18)
    }
}

fn tiny_ssl() -> SslConfig {
    SslConfig { hidden_dim: 16, feature_dim: 8, key_bn_groups: 2, ..SslConfig::default() }
}

/// MoCo (and SAMix-SSL when `samix`) over tiny ResNets for 16-pixel 3-channel images.
/// SAMix-SSL's options as a run resolves them (auto area rule, local + 0.5·global), no λ margin.
fn ssl_samix_options() -> SamixOptions {
    let mut options = SamixConfig::default().resolve(MixerVariant::Samix, Scenario::SelfSupervised);
    options.lam_margin = 0.0;
    options
}

fn build(vs: &VarStore, cfg: SslConfig, queue: usize, samix: bool) -> SslModel<Network> {
    build_with(vs, cfg, queue, samix.then(ssl_samix_options))
}

fn build_with(vs: &VarStore, cfg: SslConfig, queue: usize, samix: Option<SamixOptions>) -> SslModel<Network> {
    let paths = MocoPaths::standard(vs);
    let q = Network::new(&paths.query, &tiny_model(), 3, 10).unwrap();
    let k = Network::new(&paths.key, &tiny_model(), 3, 10).unwrap();
    let choice = samix.map_or(SslMixingChoice::None, SslMixingChoice::Samix);
    SslModel::new(vs, &paths, (q, k), cfg, queue, choice, 16).unwrap()
}

#[test]
fn queue_is_first_in_first_out_and_wraps_around() {
    let _lock = torch_rng_lock();
    tch::manual_seed(0);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs, tiny_ssl(), 8, false);
    let moco = &model.moco;
    assert_eq!(moco.queue.size(), [8, 8]);
    let norms = moco.queue.norm_scalaropt_dim(2, [0i64].as_slice(), false);
    assert!(norms.allclose(&Tensor::ones([8], (Kind::Float, Device::Cpu)), 1e-5, 1e-6, false), "unit keys");
    let keys = |v: f64| Tensor::full([4, 8], v, (Kind::Float, Device::Cpu));
    // Steps of 4 keys: step 0 → columns 0..4, step 1 → 4..8, step 2 overwrites the oldest, 0..4.
    for (step, v) in [(0u64, 1.0), (1, 2.0), (2, 3.0)] {
        moco.enqueue(&keys(v), moco.queue_position(step, 4));
    }
    let row: Vec<f32> = Vec::try_from(moco.queue.get(0)).unwrap();
    assert_eq!(row, [3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0]);
    // Keys written at the last columns wrap around to the first.
    moco.enqueue(&keys(9.0), 6);
    let row: Vec<f32> = Vec::try_from(moco.queue.get(0)).unwrap();
    assert_eq!(row, [9.0, 9.0, 3.0, 3.0, 2.0, 2.0, 9.0, 9.0]);
    assert_eq!(moco.queue_position(5, 4), 4);
}

#[test]
fn momentum_update_moves_encoder_and_neck_only_towards_the_query_side() {
    let _lock = torch_rng_lock();
    tch::manual_seed(1);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs, tiny_ssl(), 8, false);
    let vars = vs.variables();
    let before: std::collections::BTreeMap<String, Tensor> = vars.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
    for (name, t) in &vars {
        if let Some(rest) = name.strip_prefix("k.") {
            assert!(before[name].equal(&before[&format!("q.{rest}")]), "{name} starts equal to the query side");
            assert!(!t.requires_grad(), "{name} is frozen");
        }
    }
    // Move every query parameter by +1, then one momentum step with m = 0.9.
    tch::no_grad(|| {
        for (name, t) in &vars {
            if name.starts_with("q.") && t.requires_grad() {
                let _ = t.shallow_clone().g_add_scalar_(1.0);
            }
        }
    });
    model.moco.momentum_update(0.9).unwrap();
    let (mut neck, mut encoder) = (0, 0);
    for (name, t) in &vars {
        let Some(rest) = name.strip_prefix("k.") else { continue };
        let is_param = vars[&format!("q.{rest}")].requires_grad();
        let want = if is_param { &before[name] + 0.1 } else { before[name].shallow_clone() };
        assert!(t.allclose(&want, 1e-5, 1e-6, false), "{name}: k ← 0.9·k + 0.1·q (statistics untouched)");
        if is_param {
            if rest.starts_with("neck.") {
                neck += 1
            } else {
                encoder += 1
            }
        }
    }
    assert_eq!(neck, 4, "both linear layers of the neck follow");
    assert!(encoder > 10, "the encoder's parameters follow");
    assert!(model.moco.queue.equal(&before["moco.queue"]), "the queue is not a parameter");
}

fn views(n: i64) -> (Tensor, Tensor) {
    (
        Tensor::randn([n, 3, 16, 16], (Kind::Float, Device::Cpu)),
        Tensor::randn([n, 3, 16, 16], (Kind::Float, Device::Cpu)),
    )
}

/// Which groups of variables (query side, key side, Mixer) `term` sends a non-zero gradient to.
fn reached(vs: &VarStore, term: &Tensor) -> [bool; 3] {
    for (_, t) in vs.variables() {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    term.backward();
    let mut out = [false; 3];
    for (name, t) in vs.variables() {
        let g = t.grad();
        if g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0 {
            let i = ["q.", "k.", "mixer."].iter().position(|p| name.starts_with(p)).expect("a known prefix");
            out[i] = true;
        }
    }
    out
}

#[test]
fn samix_ssl_gradients_reach_only_what_each_term_trains() {
    let _lock = torch_rng_lock();
    tch::manual_seed(2);
    let vs = VarStore::new(Device::Cpu);
    let model = build(&vs, tiny_ssl(), 16, true);
    let (x1, x2) = views(8);
    let mut rng = SamixRng::seed_from_u64(3);
    let d = model.draw(8, &mut rng, Device::Cpu);
    let term = |pick: fn(&samix::ssl::SslLosses) -> Tensor| {
        let l = model.losses(&x1, &x2, &d, &mut SamixRng::seed_from_u64(4)).unwrap();
        reached(&vs, &pick(&l))
    };
    // [query side, key side, Mixer]
    assert_eq!(term(|l| l.moco.shallow_clone()), [true, false, false], "MoCo trains the query side only");
    assert_eq!(
        term(|l| l.mix.as_ref().unwrap().shallow_clone()),
        [true, false, false],
        "backbone branch: query side only"
    );
    assert_eq!(
        term(|l| l.mixer.as_ref().unwrap().shallow_clone()),
        [false, false, true],
        "Mixer branch: the Mixer only"
    );
    assert_eq!(term(|l| l.mask.as_ref().unwrap().shallow_clone()), [false, false, true], "mask loss: the Mixer only");
}

/// The mixed samples' losses, recomputed by hand from the step's own masks and keys: sample n
/// mixes view 1 of image n with view 2 of image perm[n], so its positives must be view 2's key of
/// n (λ) and view 1's key of perm[n] (1 − λ). The leaky choice (view 2's key of perm[n], the key
/// of the very view the sample contains) and the other branch's pairing give other values.
#[test]
fn mixed_samples_are_matched_with_the_other_views_of_their_two_sources() {
    let _lock = torch_rng_lock();
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let options = SamixOptions { contrastive_loss: ContrastiveLoss::Global, ..ssl_samix_options() };
    let model = build_with(&vs, tiny_ssl(), 16, Some(options));
    // Attention weights of a trained size (at initialisation the Mixer barely reads λ).
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name == "mixer.query.weight" || name == "mixer.key.weight" {
                let _ = t.g_mul_scalar_(20.0);
            }
        }
    });
    let (x1, x2) = views(8);
    let mut rng = SamixRng::seed_from_u64(6);
    let d = model.draw(8, &mut rng, Device::Cpu);
    assert!(!d.perm_bb.equal(&d.perm_mb), "the two branches draw their own pairing");
    let l = model.losses(&x1, &x2, &d, &mut rng).unwrap();
    let moco = &model.moco;
    let keys = moco.keys(&Tensor::cat(&[&x1, &x2], 0), &d.key_shuffle);
    let (k1, k2) = (keys.narrow(0, 0, 8), keys.narrow(0, 8, 8));
    let (queue, tau) = (&moco.queue, moco.cfg.temperature);
    let mixed = |s: &Tensor, perm: &Tensor| &x1 * (-s + 1.0) + x2.index_select(0, perm) * s;
    let _guard = tch::no_grad_guard();

    // The masks themselves come from view 1's maps and the partners' view-2 maps, with the
    // branch's own λ, and the backbone mask covers λ of the first image within the margin.
    let SslMixing::Samix(samix) = &model.mixing else { panic!("SAMix-SSL") };
    let (_, maps) = moco.keys_and_maps(&Tensor::cat(&[&x1, &x2], 0), &d.key_shuffle, samix.options.mask_stage).unwrap();
    let (f1, f2) = (maps.narrow(0, 0, 8), maps.narrow(0, 8, 8));
    let s_mb = samix.mixer.mask_of(&f1, &f2.index_select(0, &d.perm_mb), &d.lam_mb, true);
    assert!(s_mb.allclose(l.s_mb.as_ref().unwrap(), 1e-5, 1e-6, false), "the Mixer branch's mask");
    let s_flipped = samix.mixer.mask_of(&f1, &f2.index_select(0, &d.perm_mb), &(1.0 - &d.lam_mb), true);
    assert!(!s_flipped.allclose(&s_mb, 1e-4, 1e-4, false), "λ's direction matters to the mask");
    let share = (-l.s_bb.as_ref().unwrap() + 1.0).mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
    let off = (share - d.lam_bb.double_value(&[])).abs().max().double_value(&[]);
    assert!(off <= 0.1 + 1e-4, "the backbone mask covers λ of view 1 within mean_margin (off by {off})");

    let x_bb = mixed(l.s_bb.as_ref().unwrap(), &d.perm_bb);
    let z_bb = moco.query(&x_bb, true);
    let loss_bb = |pos_b: &Tensor| mixed_info_nce(&z_bb, &k2, pos_b, &d.lam_bb, queue, tau).double_value(&[]);
    let got = l.mix.as_ref().unwrap().double_value(&[]);
    close(got, loss_bb(&k1.index_select(0, &d.perm_bb)), "backbone branch");
    assert!((got - loss_bb(&k2.index_select(0, &d.perm_bb))).abs() > 1e-3, "the leaky positive would be noticed");
    assert!((got - loss_bb(&k1.index_select(0, &d.perm_mb))).abs() > 1e-3, "a mismatched pairing would be noticed");

    let x_mb = mixed(&l.s_mb.as_ref().unwrap().detach(), &d.perm_mb);
    let z_mb = moco.embed_k(&x_mb);
    let loss_mb = |pos_b: &Tensor| mixed_info_nce(&z_mb, &k2, pos_b, &d.lam_mb, queue, tau).double_value(&[]);
    let got = l.mixer.as_ref().unwrap().double_value(&[]);
    close(got, loss_mb(&k1.index_select(0, &d.perm_mb)), "Mixer branch");
    assert!((got - loss_mb(&k2.index_select(0, &d.perm_mb))).abs() > 1e-3, "the leaky positive would be noticed");
    assert!((got - loss_mb(&k1.index_select(0, &d.perm_bb))).abs() > 1e-3, "a mismatched pairing would be noticed");
    assert!(matches!(model.mixing, SslMixing::Samix(_)));
}

/// The input-policy baselines: a same-view mix of images n and j is matched with view 2's keys of
/// n (λ) and j (1 − λ); a cross-view mix (view 1 of n, view 2 of j) with view 2's key of n and
/// view 1's key of j, λ the policy's own label weight.
#[test]
fn baseline_mixes_are_matched_with_their_sources_other_views() {
    let _lock = torch_rng_lock();
    for cross_view in [false, true] {
        tch::manual_seed(8);
        let vs = VarStore::new(Device::Cpu);
        let paths = MocoPaths::standard(&vs);
        let q = Network::new(&paths.query, &tiny_model(), 3, 10).unwrap();
        let k = Network::new(&paths.key, &tiny_model(), 3, 10).unwrap();
        let policy = samix::mix::CutMix::new(1.0).unwrap();
        let choice = SslMixingChoice::Input { policy: Box::new(policy.clone()), cross_view };
        let model = SslModel::new(&vs, &paths, (q, k), tiny_ssl(), 16, choice, 16).unwrap();
        let (x1, x2) = views(8);
        let mut rng = SamixRng::seed_from_u64(9);
        let d = model.draw(8, &mut rng, Device::Cpu);
        let replay = rng.clone();
        let got = model.losses(&x1, &x2, &d, &mut rng).unwrap().mix.unwrap().double_value(&[]);
        let _guard = tch::no_grad_guard();
        let moco = &model.moco;
        let index = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        let mixed = samix::mix::MixPolicy::mix(&policy, &x1, &index, &mut replay.clone());
        let partner = &mixed.targets.y_b;
        // The step's keys: of view 2 alone (same view), or of both views in one shuffled pass.
        let (k1, k2) = if cross_view {
            let keys = moco.keys(&Tensor::cat(&[&x1, &x2], 0), &d.key_shuffle);
            (Some(keys.narrow(0, 0, 8)), keys.narrow(0, 8, 8))
        } else {
            (None, moco.keys(&x2, &d.key_shuffle))
        };
        // The right second positive, and a wrong one a slip would use: the key of the very view
        // the cross-view mix contains (the leak), or the unpaired key of the same-view case.
        let (images, pos_b, wrong_b) = match &k1 {
            Some(k1) => {
                let first = mixed.first_weight.as_ref().unwrap();
                let images = &x1 * first + x2.index_select(0, partner) * (-first + 1.0);
                (images, k1.index_select(0, partner), k2.index_select(0, partner))
            }
            None => (mixed.images.shallow_clone(), k2.index_select(0, partner), k2.shallow_clone()),
        };
        let z = moco.query(&images, true);
        let loss = |pos_b: &Tensor| {
            mixed_info_nce(&z, &k2, pos_b, &mixed.targets.lam, &moco.queue, moco.cfg.temperature).double_value(&[])
        };
        close(got, loss(&pos_b), if cross_view { "cross-view" } else { "same-view" });
        assert!((got - loss(&wrong_b)).abs() > 1e-4, "cross_view={cross_view}: another positive would be noticed");
    }
}

#[test]
fn knn_votes_are_weighted_by_similarity() {
    // Bank: three unit features with labels 0, 0, 1; k = 2, τ = 0.5.
    let bank = Bank {
        features: t2(&[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]),
        labels: Tensor::from_slice(&[0i64, 0, 1]),
        classes: 2,
    };
    // Query (0, 1): neighbours are bank 2 (sim 1, label 1) and bank 1 (sim 0.6, label 0).
    let votes = bank.votes(&t2(&[[0.0, 1.0]]), 2, 0.5);
    let v: Vec<f32> = Vec::try_from(votes.flatten(0, -1)).unwrap();
    close(v[0] as f64, 1.2f64.exp(), "label 0's vote");
    close(v[1] as f64, 2f64.exp(), "label 1's vote");
    let c = bank.count(&t2(&[[0.0, 1.0], [1.0, 0.0]]), &Tensor::from_slice(&[0i64, 0]), 2, 0.5);
    assert_eq!(c.top1.int64_value(&[]), 1, "the first query is outvoted, the second is right");
    assert_eq!(c.top5.int64_value(&[]), 2);
    let share0 = 1.2f64.exp() / (1.2f64.exp() + 2f64.exp());
    close(c.nll.double_value(&[]), -share0.ln() - 1f64.ln(), "−log share of the true class");
}

/// The total is the sum of the terms, and summing leaves every term as it was (the metrics log
/// each term after the step has summed them).
#[test]
fn the_total_leaves_its_terms_unchanged() {
    let t = |v: f64| Tensor::from(v as f32);
    let losses = samix::ssl::SslLosses {
        moco: t(1.0),
        mix: Some(t(2.0)),
        mixer: Some(t(4.0)),
        mask: Some(t(8.0)),
        keys: Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)),
        s_mb: None,
        s_bb: None,
    };
    close(losses.total(0.5).double_value(&[]), 14.0, "1 + 0.5·2 + 4 + 8");
    close(losses.total(1.0).double_value(&[]), 15.0, "again, weight 1");
    close(losses.moco.double_value(&[]), 1.0, "moco untouched");
}

/// `mix.mask_loss.end_weight` anneals SAMix-SSL's mask loss as it does the supervised one's: at
/// the run's last step the term is `end_weight/weight` of its unscaled value (momentum 1 keeps
/// the key side, and so the Mixer's input, the same between the two evaluations).
#[test]
fn ssl_mask_loss_follows_the_end_weight_anneal() {
    let _lock = torch_rng_lock();
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let mut options = ssl_samix_options();
    options.mask_loss.end_weight = Some(options.mask_loss.weight * 0.25);
    let model = build_with(&vs, SslConfig { momentum: 1.0, ..tiny_ssl() }, 16, Some(options));
    let (x1, x2) = views(8);
    let d = model.draw(8, &mut SamixRng::seed_from_u64(3), Device::Cpu);
    let unscaled = model.losses(&x1, &x2, &d, &mut SamixRng::seed_from_u64(4)).unwrap();
    let unscaled = unscaled.mask.unwrap().double_value(&[]);
    assert!(unscaled > 0.0, "the mask loss is active before annealing");
    let plan = |step| SslStepPlan {
        draws: &d,
        precision: Default::default(),
        cache_casts: false,
        mix_weight: 1.0,
        step,
        total_steps: 10,
        global_batch: 8,
    };
    let mut rng = SamixRng::seed_from_u64(4);
    let run = |step, rng: &mut SamixRng| {
        let l = model.step((&x1, &x2), &plan(step), rng, |_| Ok(()), |k| Ok(k.shallow_clone())).unwrap();
        l.mask.unwrap().double_value(&[])
    };
    close(run(0, &mut rng), unscaled, "first step: full weight");
    close(run(10, &mut rng), unscaled * 0.25, "last step: end_weight / weight");
}

/// `pos_extend = "both"`: each step's blend weights are `N×D`, all interpolating (in [0, 1]) or
/// all extrapolating (in [1, 2]) by a coin per step, Beta(2, 2) about the range's middle; with
/// no extension the step draws none.
#[test]
fn pos_extend_draws_one_mode_per_step_from_beta_2_2() {
    let _lock = torch_rng_lock();
    tch::manual_seed(6);
    let vs = VarStore::new(Device::Cpu);
    let mut options = ssl_samix_options();
    options.contrastive_loss =
        ContrastiveLoss::GlobalLocal { eta: 0.5, pos_extend: Some(samix::samix::PosExtend::Both) };
    let model = build_with(&vs, tiny_ssl(), 16, Some(options));
    let mut rng = SamixRng::seed_from_u64(9);
    let mut modes = [0usize; 2];
    for _ in 0..24 {
        let u = model.draw(8, &mut rng, Device::Cpu).pos_extend;
        assert_eq!(u.size(), [8, 8], "one weight per image and key dimension");
        let (lo, hi) = (u.min().double_value(&[]), u.max().double_value(&[]));
        let extrapolating = lo >= 1.0;
        assert!(extrapolating || hi <= 1.0, "one mode per step, got [{lo}, {hi}]");
        let centred = u.mean(Kind::Float).double_value(&[]) - if extrapolating { 1.5 } else { 0.5 };
        assert!(centred.abs() < 0.1, "Beta(2, 2) is centred on the range's middle, off by {centred}");
        modes[extrapolating as usize] += 1;
    }
    assert!(modes[0] > 3 && modes[1] > 3, "the coin picks both modes: {modes:?}");
    // Draws made by hand without the blend weights are refused, not a shape panic.
    let (x1, x2) = views(8);
    let mut d = model.draw(8, &mut rng, Device::Cpu);
    d.pos_extend = Tensor::zeros([0], (Kind::Float, Device::Cpu));
    let err = model.losses(&x1, &x2, &d, &mut rng).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("pos_extend"), "{err}");
    let plain = build(&VarStore::new(Device::Cpu), tiny_ssl(), 16, true);
    assert_eq!(plain.draw(8, &mut rng, Device::Cpu).pos_extend.numel(), 0);
}
