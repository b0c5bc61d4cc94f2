//! The libtorch shim (fused SGD groups, autocast, CUDA-only entry points on a CPU machine), the
//! device-side draws that make a step capturable, and the bench's memory and loader figures.
mod common;
use common::*;
use samix::bench::{bench_loader, bench_step, BenchOptions, Method, PeakMemory};
use samix::config::TrainConfig;
use samix::mix::{cutmix_box_on_device, CutMix, LambdaSampler, MixPolicy, MixUp};
use samix::model::Network;
use samix::model::{Arch, ModelConfig};
use samix::native::{self, CudaGraph, Precision};
use samix::optim::OptimConfig;
use samix::optim::{Optimizer, ParamGroup};
use samix::samix::{adjust_area, backbone_mask};
use samix::samix::{MaskAdjust, MixerVariant, SamixConfig, Scenario};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// A ResNet-18-shaped CIFAR network of widths 8/16/32/64, one block per stage.
fn tiny_resnet() -> ModelConfig {
    ModelConfig { base_width: Some(8), blocks: Some(vec![1, 1, 1, 1]), ..ModelConfig::new(Arch::Resnet18) }
}

fn f64s(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn fused_sgd_keeps_groups_rates_and_untouched_parameters() {
    let vs = VarStore::new(Device::Cpu);
    let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32, -2.0]));
    let b = vs.root().sub("mixer").var_copy("b", &Tensor::from_slice(&[3.0f32]));
    let idle = vs.root().var_copy("idle", &Tensor::from_slice(&[5.0f32]));
    let default = OptimConfig::sgd(0.1, 0.9, 0.0, false);
    let plain = OptimConfig::sgd(0.1, 0.0, 0.5, false);
    let mut sgd = Optimizer::with_groups(&vs, &default, &[ParamGroup { prefix: "mixer.".into(), cfg: plain }]);
    // loss = Σa² + b² (idle unused) → grads 2a, 2b.
    let (mut wa, mut va, mut wb) = ([1.0f64, -2.0], [0.0f64; 2], 3.0f64);
    for (step, lrs) in [[0.1, 0.01], [0.05, 0.02], [0.2, 0.03]].iter().enumerate() {
        sgd.zero_grad();
        ((&a * &a).sum(Kind::Float) + (&b * &b).sum(Kind::Float)).backward();
        sgd.step_groups(lrs).unwrap();
        for i in 0..2 {
            let g = 2.0 * wa[i];
            va[i] = if step == 0 { g } else { 0.9 * va[i] + g };
            wa[i] -= lrs[0] * va[i];
        }
        wb -= lrs[1] * (2.0 * wb + 0.5 * wb);
        let (ga, gb) = (f64s(&a), f64s(&b));
        assert!((ga[0] - wa[0]).abs() < 1e-5 && (ga[1] - wa[1]).abs() < 1e-5, "step {step}: {ga:?} vs {wa:?}");
        assert!((gb[0] - wb).abs() < 1e-5, "step {step}: momentum-free group with weight decay: {gb:?} vs {wb}");
    }
    assert_eq!(f64s(&idle), vec![5.0], "a parameter without a gradient is left alone");
    let state: Vec<String> = sgd.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(state, vec!["momentum.a".to_string()], "buffers only where momentum is used and a gradient came");
}

#[test]
fn bf16_autocast_casts_inside_the_region_only_and_still_learns() {
    let _rng = torch_rng_lock();
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let model = tiny_resnet();
    let net = Network::new(&vs.root(), &model, 3, 10).unwrap();
    let x = Tensor::randn([16, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(16, (Kind::Int64, Device::Cpu)).remainder(10);
    let conv = tch::nn::conv2d(vs.root() / "probe", 3, 4, 3, Default::default());
    let inside = native::with_precision(Precision::Bf16, Device::Cpu, true, || x.apply(&conv).kind()).unwrap();
    assert_eq!(inside, Kind::BFloat16, "convolutions run in bf16 under autocast");
    assert_eq!(x.apply(&conv).kind(), Kind::Float, "and in f32 again after the region");
    let after_inner = native::with_precision(Precision::Bf16, Device::Cpu, true, || {
        native::with_precision(Precision::Bf16, Device::Cpu, false, || ()).unwrap();
        x.apply(&conv).kind()
    })
    .unwrap();
    assert_eq!(after_inner, Kind::BFloat16, "leaving an inner region keeps the outer one on");
    assert_eq!(x.apply(&conv).kind(), Kind::Float);
    assert_eq!(
        native::with_precision(Precision::F32, Device::Cpu, true, || x.apply(&conv).kind()).unwrap(),
        Kind::Float
    );

    let mut sgd = Optimizer::new(&vs, &OptimConfig::sgd(0.05, 0.9, 0.0, false));
    let mut losses = Vec::new();
    for _ in 0..25 {
        let loss = native::with_precision(Precision::Bf16, Device::Cpu, true, || {
            samix::loss::cross_entropy(&net.forward_t(&x, true), &y, 0.0)
        })
        .unwrap();
        assert_eq!(loss.kind(), Kind::Float, "the loss stays f32");
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.05).unwrap();
        losses.push(loss.double_value(&[]));
    }
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[24] < 0.5 * losses[0], "a bf16 step fits a fixed batch: {losses:?}");
    let w = &vs.variables()["conv1.weight"];
    assert_eq!((w.kind(), w.grad().kind()), (Kind::Float, Kind::Float), "parameters and gradients stay f32");
}

#[test]
fn cuda_only_entry_points_fail_cleanly_without_a_gpu() {
    if tch::Cuda::is_available() {
        assert!(native::cuda_memory(0).is_ok());
        return;
    }
    let err = CudaGraph::capture(Device::Cpu, 1, || Ok(())).err().expect("no graph on the CPU").to_string();
    assert!(err.contains("CUDA"), "{err}");
    assert!(native::cuda_memory(0).is_err(), "no CUDA device to report on");
    let opts = BenchOptions {
        device: Device::Cpu,
        batch: 2,
        warmup: 0,
        steps: 1,
        precision: Precision::F32,
        cuda_graph: true,
        channels_last: false,
        model: samix::bench::BenchModel::CifarResnet18,
    };
    assert!(bench_step(Method::Vanilla, &opts).unwrap_err().to_string().contains("--cuda-graph"));
}

#[test]
fn device_lambda_draws_follow_beta() {
    let _rng = torch_rng_lock();
    tch::manual_seed(5);
    for alpha in [2.0, 0.2, 1.0] {
        let lam = f64s(&LambdaSampler::new(alpha).unwrap().sample_on_device(&[20000], Device::Cpu));
        let mean = lam.iter().sum::<f64>() / lam.len() as f64;
        let var = lam.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lam.len() as f64;
        let want_var = 1.0 / (4.0 * (2.0 * alpha + 1.0));
        assert!(lam.iter().all(|l| (0.0..=1.0).contains(l)));
        assert!((mean - 0.5).abs() < 0.01, "α={alpha}: mean {mean}");
        assert!((var - want_var).abs() < 0.1 * want_var, "α={alpha}: variance {var} vs {want_var}");
    }
    assert_eq!(LambdaSampler::new(2.0).unwrap().sample_on_device(&[], Device::Cpu).dim(), 0);
}

#[test]
fn device_mixup_blends_with_its_own_lambda() {
    let _rng = torch_rng_lock();
    tch::manual_seed(6);
    let x = Tensor::randn([6, 3, 4, 4], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5]);
    for per_sample in [false, true] {
        let m = MixUp::new(1.0, per_sample).unwrap().mix_on_device(&x, &y).unwrap();
        let perm = m.pairing.unwrap();
        let mut sorted = Vec::<i64>::try_from(&perm).unwrap();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4, 5]);
        assert!(m.targets.y_b.equal(&y.index_select(0, &perm)));
        let lam = m.targets.lam.view([6, 1, 1, 1]);
        let want = &x * &lam + x.index_select(0, &perm) * (1.0 - &lam);
        assert!(m.images.allclose(&want, 1e-6, 1e-6, false));
        let lams = f64s(&m.targets.lam);
        assert_eq!(lams.iter().all(|l| *l == lams[0]), !per_sample);
    }
}

#[test]
fn device_cutmix_box_area_is_lambda_to_the_pixel() {
    let _rng = torch_rng_lock();
    tch::manual_seed(7);
    let sampler = LambdaSampler::new(1.0).unwrap();
    let mut partial = 0;
    for _ in 0..200 {
        let (weight, kept) = cutmix_box_on_device(12, 10, &sampler, Device::Cpu);
        let w = f64s(&weight);
        assert!(w.iter().all(|v| *v == 0.0 || *v == 1.0), "binary box");
        let area = w.iter().sum::<f64>();
        assert!((kept.double_value(&[]) - (1.0 - area / 120.0)).abs() < 1e-6, "kept fraction = 1 − box area / image");
        // A box: the covered rows and columns form a full rectangle.
        let m = weight.view([12, 10]);
        let rows = f64s(&m.amax(&[1i64][..], false)).iter().sum::<f64>();
        let cols = f64s(&m.amax(&[0i64][..], false)).iter().sum::<f64>();
        assert_eq!(rows * cols, area);
        if area > 0.0 && area < 120.0 {
            partial += 1;
        }
    }
    assert!(partial > 100, "most boxes cut something: {partial}");
    let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let m = CutMix::new(1.0).unwrap().mix_on_device(&x, &y).unwrap();
    let (first, perm) = (m.first_weight.unwrap(), m.pairing.unwrap());
    let want = &x * &first + x.index_select(0, &perm) * (1.0 - &first);
    assert!(m.images.allclose(&want, 0.0, 0.0, false), "pixels come whole from one image or the other");
    let kept = f64s(&m.targets.lam);
    assert!((kept[0] - first.mean(Kind::Double).double_value(&[])).abs() < 1e-6);
}

#[test]
fn samix_step_with_device_draws_is_finite_and_trains_the_mixer() {
    let _rng = torch_rng_lock();
    tch::manual_seed(8);
    let resolved =
        SamixConfig { mask_adjust: Some(MaskAdjust::Probability(0.5)), ..toml::from_str::<SamixConfig>("").unwrap() }
            .resolve(MixerVariant::Samix, Scenario::Supervised);
    let vs = VarStore::new(Device::Cpu);
    let model = tiny_resnet();
    let nets = common::online_samix(&vs, &model, resolved, 3, 10, 16);
    let x = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
    let y = Tensor::arange(8, (Kind::Int64, Device::Cpu));
    for _ in 0..4 {
        let d = nets.draw_on_device(8, Device::Cpu);
        let l = nets.losses(&x, &y, &d, 0.0);
        let total = l.total();
        assert!(total.double_value(&[]).is_finite());
        let s_bb = f64s(&l.s_bb);
        assert!(s_bb.iter().all(|v| (0.0..=1.0).contains(v)));
        let flag = d.adjust_bb.double_value(&[]);
        assert!(flag == 0.0 || flag == 1.0);
        for v in vs.variables().values() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        total.backward();
        let mixer_grad: f64 = vs
            .variables()
            .iter()
            .filter(|(n, _)| n.starts_with("mixer."))
            .map(|(_, t)| t.grad())
            .filter(|g| g.defined())
            .map(|g| g.abs().sum(Kind::Double).double_value(&[]))
            .sum();
        assert!(mixer_grad > 0.0, "the Mixer learns from device-drawn steps");
    }
}

#[test]
fn backbone_mask_blends_are_exact() {
    let _rng = torch_rng_lock();
    tch::manual_seed(9);
    let s = Tensor::rand([3, 1, 6, 6], (Kind::Float, Device::Cpu));
    let lam = Tensor::from(0.4f32);
    let adjusted = backbone_mask(s.shallow_clone(), &lam, Some(&Tensor::from(1.0f32)), 0.08);
    assert!(adjusted.allclose(&adjust_area(&s, &lam), 1e-6, 1e-6, false), "flag 1 rescales the area");
    assert!(
        backbone_mask(s.shallow_clone(), &lam, Some(&Tensor::from(0.0f32)), 0.08).equal(&s),
        "flag 0 keeps the mask bit for bit"
    );
    let at_margin = backbone_mask(s.shallow_clone(), &Tensor::from(0.95f32), None, 0.08);
    assert!(f64s(&at_margin).iter().all(|v| (v - 0.05).abs() < 1e-6), "1 − λ within the margin gives plain mixup");
}

#[test]
fn bench_reports_step_time_and_peak_memory_on_the_cpu() {
    let _rng = torch_rng_lock();
    let opts = BenchOptions {
        device: Device::Cpu,
        batch: 4,
        warmup: 1,
        steps: 1,
        precision: Precision::F32,
        cuda_graph: false,
        channels_last: false,
        model: samix::bench::BenchModel::CifarResnet18,
    };
    let r = bench_step(Method::Mixup, &opts).unwrap();
    assert!(r.ms_per_step > 0.0 && (r.images_per_sec - 4000.0 / r.ms_per_step).abs() < 1e-6);
    match r.peak_memory {
        // ResNet-18's parameters alone are 45 MB.
        Some(PeakMemory::ProcessRss(bytes)) => assert!(bytes > 45_000_000, "{bytes}"),
        other => panic!("expected the process's peak RSS on the CPU, got {other:?}"),
    }
}

/// The ImageNet step the bench also times: ResNet-50 at 224 with 1,000 classes, and online SAMix
/// on it (the Mixer on stage 3, 14×14×1024, up-sampled ×16 to the image).
#[test]
fn bench_times_the_imagenet_resnet50_step_and_samix_on_it() {
    let _rng = torch_rng_lock();
    let opts = BenchOptions {
        device: Device::Cpu,
        batch: 2,
        warmup: 0,
        steps: 1,
        precision: Precision::F32,
        cuda_graph: false,
        channels_last: true,
        model: samix::bench::BenchModel::ImagenetResnet50,
    };
    for method in [Method::Vanilla, Method::Samix] {
        let r = bench_step(method, &opts).unwrap_or_else(|e| panic!("{method:?}: {e}"));
        // ResNet-50's parameters alone are 102 MB (two copies for SAMix).
        assert!(matches!(r.peak_memory, Some(PeakMemory::ProcessRss(b)) if b > 100_000_000), "{:?}", r.peak_memory);
    }
    let err = samix::bench::BenchModel::from_name("imagenet-r18").unwrap_err().to_string();
    assert!(err.contains("cifar-r18, imagenet-r50, deit-s or convnext-t"), "{err}");
}

/// The transformer step the bench times: online SAMix on DeiT-S at 224, the Mixer reading block
/// 6's 14×14 patch-token map (one mask value per 16-px patch).
#[test]
fn bench_times_samix_on_deit_small() {
    let _rng = torch_rng_lock();
    let model = samix::bench::BenchModel::from_name("deit-s").unwrap();
    assert_eq!(model.samix_options().mask_stage, 5);
    let opts = BenchOptions {
        device: Device::Cpu,
        batch: 2,
        warmup: 0,
        steps: 1,
        precision: Precision::F32,
        cuda_graph: false,
        channels_last: false,
        model,
    };
    let r = bench_step(Method::Samix, &opts).unwrap();
    // DeiT-S's parameters are 88 MB, two copies for SAMix.
    assert!(matches!(r.peak_memory, Some(PeakMemory::ProcessRss(b)) if b > 170_000_000), "{:?}", r.peak_memory);
}

#[test]
fn loader_bench_counts_the_batches_it_timed() {
    let text = tiny_fashion_config(200, 50, 1, "policy = \"none\"");
    let cfg = TrainConfig::parse(&text, &[]).unwrap();
    let splits = samix::data::open_splits(&cfg.data).unwrap();
    let loader = samix::train::train_loader(&cfg, splits.train.clone(), Device::Cpu);
    let r = bench_loader(&loader, 3).unwrap();
    assert_eq!(r.batches, 3);
    assert!(r.images_per_sec > 0.0 && r.seconds > 0.0);
}

/// GPU only (ignored on the CPU; bench/gpu.sh runs it on the device with `--include-ignored`):
/// replaying a captured vanilla step equals running it eagerly, step for step.
#[test]
#[ignore = "needs CUDA"]
fn cuda_graph_replays_match_eager_steps() {
    assert!(tch::Cuda::is_available(), "this test needs a CUDA device");
    let _rng = torch_rng_lock();
    let device = Device::Cuda(0);
    let build = || {
        tch::manual_seed(21);
        let vs = VarStore::new(device);
        let model = tiny_resnet();
        let net = Network::new(&vs.root(), &model, 3, 10).unwrap();
        let sgd = Optimizer::new(&vs, &OptimConfig::sgd(0.05, 0.9, 1e-4, false));
        (vs, net, sgd)
    };
    let x = Tensor::randn([16, 3, 16, 16], (Kind::Float, device));
    let y = Tensor::arange(16, (Kind::Int64, device)).remainder(10);
    let step = |net: &Network, sgd: &mut Optimizer| -> samix::Result<()> {
        let loss = samix::loss::cross_entropy(&net.forward_t(&x, true), &y, 0.0);
        sgd.zero_grad();
        loss.backward();
        sgd.apply()
    };
    let (warmup, replays) = (3, 5);
    let (vs_eager, net_eager, mut sgd_eager) = build();
    for _ in 0..warmup + replays {
        step(&net_eager, &mut sgd_eager).unwrap();
    }
    let (vs_graph, net_graph, mut sgd_graph) = build();
    let graph = CudaGraph::capture(device, warmup, || step(&net_graph, &mut sgd_graph)).unwrap();
    for _ in 0..replays {
        graph.replay().unwrap();
    }
    tch::Cuda::synchronize(0);
    let (a, b) = (vs_eager.variables(), vs_graph.variables());
    for (name, t) in &a {
        assert!(t.allclose(&b[name], 1e-3, 1e-4, false), "{name} differs between eager and replayed steps");
    }
}

/// GPU only (ignored on the CPU): the SAMix step (device draws, bf16) captures and replays
/// without error and reports its peak device memory.
#[test]
#[ignore = "needs CUDA"]
fn cuda_graph_samix_step_captures_and_replays() {
    assert!(tch::Cuda::is_available(), "this test needs a CUDA device");
    let _rng = torch_rng_lock();
    let opts = BenchOptions {
        device: Device::Cuda(0),
        batch: 32,
        warmup: 3,
        steps: 5,
        precision: Precision::Bf16,
        cuda_graph: true,
        channels_last: false,
        model: samix::bench::BenchModel::CifarResnet18,
    };
    let r = bench_step(Method::Samix, &opts).unwrap();
    assert!(r.ms_per_step > 0.0);
    assert!(matches!(r.peak_memory, Some(PeakMemory::DeviceAllocated(b)) if b > 45_000_000), "{:?}", r.peak_memory);
}

#[test]
fn channels_last_changes_the_layout_not_the_numbers() {
    let _rng = torch_rng_lock();
    tch::manual_seed(12);
    let vs = VarStore::new(Device::Cpu);
    let model = tiny_resnet();
    let net = Network::new(&vs.root(), &model, 3, 10).unwrap();
    let x = Tensor::randn([4, 3, 16, 16], (Kind::Float, Device::Cpu));
    let before = net.forward_t(&x, false);
    let saved: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
    native::vars_to_channels_last(&vs).unwrap();
    let conv = &vs.variables()["conv1.weight"];
    assert!(native::is_channels_last(conv).unwrap() && !conv.is_contiguous());
    let x_cl = native::to_channels_last(&x).unwrap();
    assert!(native::is_channels_last(&x_cl).unwrap() && !native::is_channels_last(&x).unwrap());
    assert!(net.forward_t(&x_cl, false).allclose(&before, 1e-4, 1e-5, false), "same logits in either layout");
    for (n, t) in &saved {
        assert!(vs.variables()[n].equal(t), "{n}: values unchanged by the re-layout");
    }
}

#[test]
fn channels_last_run_trains_and_writes_plain_checkpoints() {
    let _rng = torch_rng_lock();
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_fashion_config(1500, 300, 2, "policy = \"mixup\"\nalpha = 1.0");
    let cfg = TrainConfig::parse(&text, &["train.channels_last=true".to_string()]).unwrap();
    assert!(cfg.train.channels_last);
    let out = tmp.path().join("run");
    let s = samix::train::run(samix::train::RunOptions {
        config: cfg.clone(),
        out: out.clone(),
        resume: false,
        force: false,
        device: Device::Cpu,
        progress: samix::train::Progress::Off,
        stop_after: None,
        stop: None,
        group: None,
    })
    .unwrap();
    assert!(s.final_acc1 > 30.0, "learns in channels-last: {}", s.final_acc1);
    // The checkpoint loads into a default-layout network and reproduces the run's accuracy.
    let ckpt = samix::train::checkpoint::open(&out.join("checkpoints/epoch-0002")).unwrap();
    let splits = samix::data::open_splits(&cfg.data).unwrap();
    let model = samix::train::Model::from_checkpoint(&ckpt, &cfg, splits.test.info(), Device::Cpu).unwrap();
    assert!(
        !native::is_channels_last(&model.vs.variables()["layer1.0.conv1.weight"]).unwrap(),
        "loaded in the default layout"
    );
    let r =
        samix::train::eval::evaluate(&model.net, &samix::train::eval_loader(&cfg, splits.test, Device::Cpu)).unwrap();
    assert!((r.acc1 - s.final_acc1).abs() < 1e-9, "{} vs {}", r.acc1, s.final_acc1);
    let momentum = Tensor::read_safetensors(out.join("checkpoints/epoch-0002/optimizer.safetensors")).unwrap();
    assert!(momentum.iter().any(|(n, t)| n == "momentum.conv1.weight" && t.is_contiguous()));
}
