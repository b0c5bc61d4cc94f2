//! The training steps the bench times, one per method, each on its own networks and fixed
//! batch: an input policy's step, online SAMix's (the trainer's own [`OnlineSamix::step`], its EMA
//! momentum on the trainer's schedule), SAMix-P's, and the MoCo v2 / SAMix-SSL steps.
use super::method::{BenchModel, Method};
use crate::config::MixConfig;
use crate::loss::mixup_cross_entropy;
use crate::mix::MixPolicy;
use crate::model::Network;
use crate::native::{self, Precision};
use crate::optim::{OptimConfig, Optimizer, ParamGroup};
use crate::rng::{stream, SamixRng, Stream};
use crate::samix::ema::path_prefix;
use crate::samix::{mixer_shape, Mixer, OnlineSamix, PretrainedMixer, SamixP, SamixPaths, StepPlan};
use crate::ssl::{MocoPaths, SslConfig, SslMixingChoice, SslModel, SslStepPlan};
use crate::train::input_policy;
use crate::{Error, Result};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// One method's training step on its own networks and fixed batch.
pub(super) trait BenchStep {
    /// One full step: draws, forward, losses, backward, optimiser update (at the learning rates
    /// already set). With `on_device`, every draw is made on the device (graph capture).
    fn run(&mut self, precision: Precision, on_device: bool, cache_casts: bool) -> Result<()>;
}

/// SGD 0.1 / 0.9 / 1e-4: the reference recipe, which is samix's default.
fn reference_sgd() -> OptimConfig {
    OptimConfig::default()
}

struct PolicyStep {
    net: Network,
    sgd: Optimizer,
    policy: Box<dyn MixPolicy>,
    x: Tensor,
    y: Tensor,
    rng: SamixRng,
}

impl PolicyStep {
    /// `model` with the reference's SGD, trained on `x`, `y` mixed by `policy`.
    fn new(
        vs: &VarStore,
        model: BenchModel,
        policy: Box<dyn MixPolicy>,
        x: Tensor,
        y: Tensor,
        rng: SamixRng,
    ) -> Result<Self> {
        let net = Network::new(&vs.root(), &model.config(), 3, model.classes())?;
        let sgd = Optimizer::new(vs, &reference_sgd());
        Ok(PolicyStep { net, sgd, policy, x, y, rng })
    }
}

impl BenchStep for PolicyStep {
    fn run(&mut self, precision: Precision, on_device: bool, cache_casts: bool) -> Result<()> {
        let device = self.x.device();
        let mixed = if on_device {
            self.policy
                .mix_on_device(&self.x, &self.y)
                .ok_or_else(|| Error::Argument("this policy cannot draw on the device".into()))?
        } else {
            self.policy.mix(&self.x, &self.y, &mut self.rng)
        };
        let loss = native::with_precision(precision, device, cache_casts, || {
            mixup_cross_entropy(&self.net.forward_t(&mixed.images, true), &mixed.targets, 0.0)
        })?;
        self.sgd.zero_grad();
        loss.backward();
        self.sgd.apply()
    }
}

struct SamixStep {
    samix: OnlineSamix<Network>,
    sgd: Optimizer,
    x: Tensor,
    y: Tensor,
    rng: SamixRng,
    /// Steps taken, and the bench's length in steps: the EMA momentum follows the trainer's
    /// schedule over them, as in a run of that length.
    step: u64,
    total_steps: u64,
}

impl BenchStep for SamixStep {
    fn run(&mut self, precision: Precision, on_device: bool, cache_casts: bool) -> Result<()> {
        let (device, n) = (self.x.device(), self.x.size()[0] as usize);
        let d =
            if on_device { self.samix.draw_on_device(n, device) } else { self.samix.draw(n, &mut self.rng, device) };
        let plan = StepPlan {
            draws: &d,
            smoothing: 0.0,
            precision,
            cache_casts,
            step: self.step,
            total_steps: self.total_steps,
        };
        let sgd = &mut self.sgd;
        self.samix.step(&self.x, &self.y, &plan, |total| {
            sgd.zero_grad();
            total.backward();
            sgd.apply()
        })?;
        self.step += 1;
        Ok(())
    }
}

/// The input policy a bench method runs, with the policy's default α.
fn bench_policy(method: Method, model: BenchModel, device: Device) -> Result<Box<dyn MixPolicy>> {
    let name = match method {
        Method::Vanilla => "none",
        Method::Mixup => "mixup",
        Method::Cutmix => "cutmix",
        Method::SamixP => return bench_samix_p(model, device),
        Method::Samix | Method::Moco | Method::MocoSamix => {
            return Err(Error::Argument(format!("{} is not an input policy", method.name())))
        }
    };
    Ok(Box::new(input_policy(&MixConfig::from_name(name, None)?, Device::Cpu)?))
}

/// Builds `method`'s networks, optimiser and fixed random batch on `device`.
pub(super) fn build_step(
    method: Method,
    device: Device,
    batch: i64,
    channels_last: bool,
    total_steps: u64,
    model: BenchModel,
) -> Result<(VarStore, Box<dyn BenchStep>)> {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let side = model.size();
    let x = Tensor::randn([batch, 3, side, side], (Kind::Float, device));
    let x = if channels_last { native::to_channels_last(&x)? } else { x };
    let y = Tensor::randint(model.classes(), [batch], (Kind::Int64, device));
    let rng = stream(0, Stream::Mix, 0, 0);
    let step: Box<dyn BenchStep> = match method {
        Method::Samix => Box::new(build_samix(&vs, model, x, y, rng, total_steps)?),
        Method::Moco | Method::MocoSamix => {
            let x2 = Tensor::randn([batch, 3, side, side], (Kind::Float, device));
            let x2 = if channels_last { native::to_channels_last(&x2)? } else { x2 };
            Box::new(build_moco(&vs, model, method == Method::MocoSamix, (x, x2), rng, total_steps)?)
        }
        policy => Box::new(PolicyStep::new(&vs, model, bench_policy(policy, model, device)?, x, y, rng)?),
    };
    if channels_last {
        native::vars_to_channels_last(&vs)?;
    }
    Ok((vs, step))
}

/// SAMix-P over a freshly initialised encoder and SAMix Mixer with the CIFAR-100 R18 defaults
/// (stage-3 features, α = 2, λ margin 0.08).
fn bench_samix_p(model: BenchModel, device: Device) -> Result<Box<dyn MixPolicy>> {
    let vs = VarStore::new(device);
    let root = vs.root();
    let encoder = Network::new(&(&root / "k"), &model.config(), 3, model.classes())?;
    let options = model.samix_options();
    let shape = mixer_shape(&encoder, options.mask_stage, model.size(), device)?;
    let mixer = Mixer::new(&(&root / "mixer"), &options.mixer, shape);
    let pretrained = PretrainedMixer::from_parts(vs, encoder, mixer, options.mask_stage, model.size());
    Ok(Box::new(SamixP::new(pretrained, options.alpha, options.mask_adjust, options.lam_margin)?))
}

/// The SAMix step with the CIFAR-100 R18 defaults (α = 2, stage-3 Mixer, bilinear up-sampling).
fn build_samix(
    vs: &VarStore,
    model: BenchModel,
    x: Tensor,
    y: Tensor,
    rng: SamixRng,
    total_steps: u64,
) -> Result<SamixStep> {
    let paths = SamixPaths::standard(vs);
    let online = Network::new(&paths.online, &model.config(), 3, model.classes())?;
    let ema = Network::new(&paths.ema, &model.config(), 3, model.classes())?;
    let samix = OnlineSamix::new(vs, &paths, online, ema, model.samix_options(), model.size())?;
    let optim = reference_sgd();
    let sgd =
        Optimizer::with_groups(vs, &optim, &[ParamGroup { prefix: path_prefix(&paths.mixer), cfg: optim.clone() }]);
    Ok(SamixStep { samix, sgd, x, y, rng, step: 0, total_steps })
}

struct MocoStep {
    model: SslModel<Network>,
    sgd: Optimizer,
    x1: Tensor,
    x2: Tensor,
    rng: SamixRng,
    /// Steps taken, and the bench's length in steps (the key momentum's schedule runs over them).
    step: u64,
    total_steps: u64,
}

impl BenchStep for MocoStep {
    fn run(&mut self, precision: Precision, on_device: bool, cache_casts: bool) -> Result<()> {
        if on_device {
            return Err(Error::Argument("the MoCo steps draw on the host (no CUDA-graph capture)".into()));
        }
        let (device, n) = (self.x1.device(), self.x1.size()[0] as usize);
        let d = self.model.draw(n, &mut self.rng, device);
        let plan = SslStepPlan {
            draws: &d,
            precision,
            cache_casts,
            mix_weight: 1.0,
            step: self.step,
            total_steps: self.total_steps,
            global_batch: n,
        };
        let sgd = &mut self.sgd;
        let optimise = |total: &Tensor| {
            sgd.zero_grad();
            total.backward();
            sgd.apply()
        };
        self.model.step((&self.x1, &self.x2), &plan, &mut self.rng, optimise, |keys| Ok(keys.shallow_clone()))?;
        self.step += 1;
        Ok(())
    }
}

/// MoCo v2 over ResNet-18 CIFAR (MoCo v2's neck, τ 0.2, momentum 0.99, 4 key sub-batches, a
/// queue of 65,536), with SAMix-SSL's Mixer (CIFAR R18 defaults) when `samix`.
fn build_moco(
    vs: &VarStore,
    model: BenchModel,
    samix: bool,
    views: (Tensor, Tensor),
    rng: SamixRng,
    total_steps: u64,
) -> Result<MocoStep> {
    let (x1, x2) = views;
    let paths = MocoPaths::standard(vs);
    let q = Network::new(&paths.query, &model.config(), 3, model.classes())?;
    let k = Network::new(&paths.key, &model.config(), 3, model.classes())?;
    let cfg = SslConfig::default();
    // SAMix-SSL as a run resolves it: the "auto" area rule, local + 0.5·global.
    let options = crate::samix::SamixConfig::default()
        .resolve(crate::samix::MixerVariant::Samix, crate::samix::Scenario::SelfSupervised);
    let choice = if samix { SslMixingChoice::Samix(options) } else { SslMixingChoice::None };
    let queue = crate::ssl::config::DEFAULT_QUEUE;
    let ssl = SslModel::new(vs, &paths, (q, k), cfg, queue, choice, model.size())?;
    crate::ssl::moco::freeze_query_classifier(vs, &paths, model.config().arch.classifier_prefix());
    let optim = OptimConfig { lr: 0.03, ..reference_sgd() };
    let sgd = if samix {
        Optimizer::with_groups(vs, &optim, &[ParamGroup { prefix: path_prefix(&paths.mixer), cfg: optim.clone() }])
    } else {
        Optimizer::new(vs, &optim)
    };
    Ok(MocoStep { model: ssl, sgd, x1, x2, rng, step: 0, total_steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's SAMix step moves the EMA copy at the trainer's scheduled momentum. Over a run of
    /// two steps, step 1 sits halfway through the schedule (0.9994995), not at its base (0.999): the
    /// momentum is read back from the update `k' − q' = m·(k − q')` by least squares.
    #[test]
    fn samix_step_follows_the_ema_schedule() {
        let (vs, mut step) = build_step(Method::Samix, Device::Cpu, 4, false, 2, BenchModel::CifarResnet18).unwrap();
        step.run(Precision::F32, false, true).unwrap();
        let var = |name: &str| vs.variables()[name].to_kind(Kind::Double);
        let k_before = var("k.conv1.weight");
        step.run(Precision::F32, false, true).unwrap();
        let (k_after, q_after) = (var("k.conv1.weight"), var("q.conv1.weight"));
        let (a, b) = (&k_after - &q_after, &k_before - &q_after);
        let m = (&a * &b).sum(Kind::Double).double_value(&[]) / (&b * &b).sum(Kind::Double).double_value(&[]);
        let ema = crate::samix::SamixOptions::samix().ema;
        let scheduled = ema.momentum_at(1, 2);
        assert!((scheduled - ema.momentum).abs() > 4e-4, "the schedule must differ from its base here");
        assert!((m - scheduled).abs() < 2e-5, "EMA momentum {m}, the schedule's {scheduled}");
    }
}
