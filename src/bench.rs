//! Throughput of one training step, the same work as ../shared/bench/torch_samix_ref.py:
//! ResNet-18 (CIFAR stem, 100 classes, 32×32) on a fixed random batch, SGD 0.1/0.9/1e-4, for
//! each method; warm-up steps first, then timed steps, with the device synchronised around the
//! timed region. Not used in training.
use crate::config::{Arch, ModelConfig, OptimConfig, Stem};
use crate::loss::mixup_cross_entropy;
use crate::mix::{CutMix, MixPolicy, MixUp, NoMix};
use crate::model::Network;
use crate::rng::{stream, Stream};
use crate::train::sgd::Sgd;
use crate::Result;
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Vanilla,
    Mixup,
    Cutmix,
    /// The online SAMix step (EMA critic, two Mixer calls, four encoder passes, EMA update).
    Samix,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Vanilla, Method::Mixup, Method::Cutmix, Method::Samix];
    pub fn name(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Mixup => "mixup",
            Method::Cutmix => "cutmix",
            Method::Samix => "samix",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub method: Method,
    pub ms_per_step: f64,
    pub images_per_sec: f64,
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Times `steps` training steps of `method` after `warmup` untimed ones.
pub fn bench_step(method: Method, device: Device, batch: i64, warmup: usize, steps: usize) -> Result<BenchResult> {
    let policy: Box<dyn MixPolicy> = match method {
        Method::Vanilla => Box::new(NoMix),
        Method::Mixup => Box::new(MixUp::new(1.0, false)?),
        Method::Cutmix => Box::new(CutMix::new(0.2)?),
        Method::Samix => return bench_samix(device, batch, warmup, steps),
    };
    bench_policy(method, policy, device, batch, warmup, steps)
}

fn bench_policy(method: Method, policy: Box<dyn MixPolicy>, device: Device, batch: i64, warmup: usize, steps: usize) -> Result<BenchResult> {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let cfg = ModelConfig { arch: Arch::Resnet18, stem: Stem::Cifar, base_width: None, blocks: None };
    let net = Network::new(&vs.root(), &cfg, 3, 100)?;
    let mut sgd = Sgd::new(&vs, &OptimConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-4, nesterov: false });
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let mut rng = stream(0, Stream::Mix, 0, 0);
    let step = || {
        let mixed = policy.mix(&x, &y, &mut rng);
        let loss = mixup_cross_entropy(&net.forward_t(&mixed.images, true), &mixed.targets, 0.0);
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.1);
    };
    time_steps(method, device, batch, warmup, steps, step)
}

fn time_steps(method: Method, device: Device, batch: i64, warmup: usize, steps: usize, mut step: impl FnMut()) -> Result<BenchResult> {
    for _ in 0..warmup {
        step();
    }
    synchronize(device);
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    synchronize(device);
    let ms = t.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64;
    Ok(BenchResult { method, ms_per_step: ms, images_per_sec: batch as f64 * 1000.0 / ms })
}

/// Images per second `policy` mixes (its `mix` alone) on a random `batch×3×32×32` batch.
pub fn bench_policy_mix(policy: &dyn MixPolicy, device: Device, batch: i64, iters: usize) -> f64 {
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let mut rng = stream(0, Stream::Mix, 0, 0);
    for _ in 0..3 {
        let _ = policy.mix(&x, &y, &mut rng);
    }
    synchronize(device);
    let t = Instant::now();
    for _ in 0..iters {
        let _ = policy.mix(&x, &y, &mut rng);
    }
    synchronize(device);
    (batch as usize * iters) as f64 / t.elapsed().as_secs_f64()
}

/// The SAMix step with the CIFAR-100 R18 defaults (α = 2, stage-3 Mixer, ×4 bilinear).
fn bench_samix(device: Device, batch: i64, warmup: usize, steps: usize) -> Result<BenchResult> {
    use crate::config::{MixerOptimConfig, OptimConfig as O, SamixConfig};
    use crate::train::samix::SamixNets;
    use crate::train::sgd::ParamGroup;
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let model = ModelConfig { arch: Arch::Resnet18, stem: Stem::Cifar, base_width: None, blocks: None };
    let r = SamixConfig {
        alpha: 2.0,
        mask_stage: 2,
        lam_margin: 0.08,
        mask_adjust: 0.0,
        mixer: None,
        mask_loss: None,
        mixer_loss: None,
        mixer_optim: MixerOptimConfig::default(),
        ema: Default::default(),
        visual_every: 0,
    }
    .resolve(crate::mixer::MixerVariant::Samix);
    let mut nets = SamixNets::new(&vs, &model, &r, 3, 100, 32)?;
    let optim = O { lr: 0.1, momentum: 0.9, weight_decay: 1e-4, nesterov: false };
    let mut sgd = Sgd::with_groups(&vs, &optim, &[ParamGroup { prefix: "mixer.".into(), cfg: optim.clone() }]);
    let lambda = crate::mix::LambdaSampler::new(2.0)?;
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let mut rng = stream(0, Stream::Mix, 0, 0);
    let step = || {
        let d = SamixNets::draw(&r, &lambda, batch as usize, &mut rng, device);
        let total = nets.losses(&r, &x, &y, &d, 0.0).total();
        sgd.zero_grad();
        total.backward();
        sgd.step_groups(&[0.1, 0.1]);
        nets.ema_update(0.999);
    };
    time_steps(Method::Samix, device, batch, warmup, steps, step)
}
