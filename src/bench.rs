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
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Vanilla, Method::Mixup, Method::Cutmix];
    pub fn name(self) -> &'static str {
        match self {
            Method::Vanilla => "vanilla",
            Method::Mixup => "mixup",
            Method::Cutmix => "cutmix",
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
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let cfg = ModelConfig { arch: Arch::Resnet18, stem: Stem::Cifar, base_width: None, blocks: None };
    let net = Network::new(&vs.root(), &cfg, 3, 100)?;
    let mut sgd = Sgd::new(&vs, &OptimConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-4, nesterov: false });
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(100, [batch], (Kind::Int64, device));
    let policy: Box<dyn MixPolicy> = match method {
        Method::Vanilla => Box::new(NoMix),
        Method::Mixup => Box::new(MixUp::new(1.0, false)?),
        Method::Cutmix => Box::new(CutMix::new(0.2)?),
    };
    let mut rng = stream(0, Stream::Mix, 0, 0);
    let mut step = || {
        let mixed = policy.mix(&x, &y, &mut rng);
        let loss = mixup_cross_entropy(&net.forward_t(&mixed.images, true), &mixed.targets, 0.0);
        sgd.zero_grad();
        loss.backward();
        sgd.step(0.1);
    };
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
