//! Policies that mix hidden features, so they run the network themselves (stage by stage through
//! [`StagedNet`]): ManifoldMix (Verma et al. 2019) mixes the input or a hidden stage's output with
//! one λ; AlignMix (Venkataramanan et al. 2022) aligns the last feature maps of the two samples
//! with Sinkhorn optimal transport before interpolating them. The reference's CIFAR setting draws
//! ManifoldMix or AlignMix with equal probability each step.
use super::{mix_targets, needs_the_model, random_pairing, LambdaSampler, MixedForward};
use crate::model::StagedNet;
use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// `policy = "manifoldmix"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManifoldmixConfig {
    pub alpha: f64,
    /// Mixing points drawn from: 0 = the input, k = after stage k.
    #[serde(default = "ManifoldmixConfig::default_points")]
    pub points: Vec<usize>,
}

impl ManifoldmixConfig {
    /// The input and the outputs of stages 1 and 2 (also what AlignMix alternates with).
    pub fn default_points() -> Vec<usize> {
        vec![0, 1, 2]
    }
    pub fn build(&self) -> Result<FeatureMix> {
        Ok(FeatureMix::Manifold(ManifoldMix::new(self.alpha, self.points.clone())?))
    }
}

impl super::PolicyConfig for ManifoldmixConfig {
    fn check(&self, num_stages: usize) -> Result<()> {
        super::check_alpha(self.alpha)?;
        if self.points.is_empty() || self.points.iter().any(|&p| p >= num_stages) {
            return Err(Error::config(
                "mix.points",
                format!("must list mixing points in 0..{num_stages} (0 = input, k = after stage k)"),
            ));
        }
        Ok(())
    }
    fn build_input(&self) -> Result<Box<dyn super::MixPolicy + Send>> {
        Err(needs_the_model())
    }
}

/// `policy = "alignmix"`: with `alternate_manifold` (the reference's CIFAR setting) each step is
/// ManifoldMix or AlignMix with probability ½.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlignmixConfig {
    pub alpha: f64,
    #[serde(default = "AlignmixConfig::default_epsilon")]
    pub epsilon: f64,
    #[serde(default = "AlignmixConfig::default_sinkhorn_iterations")]
    pub sinkhorn_iterations: usize,
    #[serde(default = "AlignmixConfig::yes")]
    pub alternate_manifold: bool,
}

impl AlignmixConfig {
    fn default_epsilon() -> f64 {
        0.1
    }
    fn default_sinkhorn_iterations() -> usize {
        100
    }
    fn yes() -> bool {
        true
    }
    pub fn build(&self) -> Result<FeatureMix> {
        let align = AlignMix::new(self.alpha, self.epsilon, self.sinkhorn_iterations)?;
        Ok(if self.alternate_manifold {
            FeatureMix::ManifoldOrAlign(ManifoldMix::new(self.alpha, ManifoldmixConfig::default_points())?, align)
        } else {
            FeatureMix::Align(align)
        })
    }
}

impl super::PolicyConfig for AlignmixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        crate::limits::check_size("mix.sinkhorn_iterations", self.sinkhorn_iterations, crate::limits::MAX_ITERATIONS)?;
        super::check_alpha(self.alpha)
    }
    fn build_input(&self) -> Result<Box<dyn super::MixPolicy + Send>> {
        Err(needs_the_model())
    }
}

#[derive(Clone, Debug)]
pub struct ManifoldMix {
    lambda: LambdaSampler,
    /// Candidate mixing points: 0 = the input, k = the output of stage k (1-based).
    points: Vec<usize>,
}

impl ManifoldMix {
    pub fn new(alpha: f64, points: Vec<usize>) -> Result<Self> {
        if points.is_empty() {
            return Err(Error::config("mix.points", "needs at least one mixing point"));
        }
        Ok(ManifoldMix { lambda: LambdaSampler::new(alpha)?, points })
    }

    pub fn forward(
        &self,
        net: &dyn StagedNet,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        rng: &mut SamixRng,
    ) -> Result<MixedForward> {
        let at = self.points[rng.gen_range(0..self.points.len())];
        if at >= net.num_stages() {
            return Err(Error::config(
                "mix.points",
                format!("{at} is not before the last of the network's {} stages", net.num_stages()),
            ));
        }
        let perm = random_pairing(x.size()[0] as usize, rng, x.device());
        let lam = self.lambda.sample(rng);
        let logits = forward_mixing_at(net, x, train, at, |h| h * lam + h.index_select(0, &perm) * (1.0 - lam));
        Ok(MixedForward { logits, targets: mix_targets(y, &perm, lam), mixed_at: at })
    }
}

/// Runs `net`, replacing the activation at mixing point `at` (0 = input, k = after stage k) by
/// `mix(activation)`.
pub fn forward_mixing_at(
    net: &dyn StagedNet,
    x: &Tensor,
    train: bool,
    at: usize,
    mix: impl Fn(&Tensor) -> Tensor,
) -> Tensor {
    let mut h = if at == 0 { net.stem_t(&mix(x), train) } else { net.stem_t(x, train) };
    for i in 0..net.num_stages() {
        h = net.stage_t(i, &h, train);
        if i + 1 == at {
            h = mix(&h);
        }
    }
    net.head(&h)
}

#[derive(Clone, Debug)]
pub struct AlignMix {
    lambda: LambdaSampler,
    epsilon: f64,
    iterations: usize,
}

impl AlignMix {
    pub fn new(alpha: f64, epsilon: f64, iterations: usize) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(Error::config("mix.epsilon", format!("{epsilon} is not a positive number")));
        }
        if iterations == 0 {
            return Err(Error::config("mix.sinkhorn_iterations", "must be at least 1"));
        }
        Ok(AlignMix { lambda: LambdaSampler::new(alpha)?, epsilon, iterations })
    }

    pub fn forward(
        &self,
        net: &dyn StagedNet,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        rng: &mut SamixRng,
    ) -> Result<MixedForward> {
        let perm = random_pairing(x.size()[0] as usize, rng, x.device());
        let lam = self.lambda.sample(rng);
        let align_second_to_first = rng.gen_bool(0.5);
        let (features, _) = net.features(x, train, &[]);
        let partner = features.index_select(0, &perm);
        let mixed = if align_second_to_first {
            &features * lam + align(&partner, &features, self.epsilon, self.iterations) * (1.0 - lam)
        } else {
            align(&features, &partner, self.epsilon, self.iterations) * lam + &partner * (1.0 - lam)
        };
        Ok(MixedForward { logits: net.head(&mixed), targets: mix_targets(y, &perm, lam), mixed_at: net.num_stages() })
    }
}

/// Entropic optimal-transport plan (`N×P×P`, P = h·w, uniform marginals 1/P) between the feature
/// vectors of `a` and `b` (`N×C×h×w`) under the raw squared-L2 cost, as the reference builds it:
/// from detached features, under no-grad (no gradient flows through the plan), with `iterations`
/// Sinkhorn updates in the log domain (a small ε on raw costs would underflow `exp(−C/ε)`; a fixed
/// count: no host sync to test convergence).
pub fn sinkhorn_plan(a: &Tensor, b: &Tensor, epsilon: f64, iterations: usize) -> Tensor {
    tch::no_grad(|| {
        let va = a.detach().flatten(2, -1).transpose(1, 2).to_kind(Kind::Float);
        let vb = b.detach().flatten(2, -1).transpose(1, 2).to_kind(Kind::Float);
        let cost = (va.square().sum_dim_intlist(-1, true, Kind::Float)
            + vb.square().sum_dim_intlist(-1, true, Kind::Float).transpose(1, 2)
            - va.matmul(&vb.transpose(1, 2)) * 2.0)
            .clamp_min(0.0);
        let log_kernel = -cost / epsilon;
        let p = log_kernel.size()[1];
        let log_marginal = -(p as f64).ln();
        let mut log_v = log_kernel.zeros_like().narrow(2, 0, 1) + log_marginal;
        let mut log_u = log_v.shallow_clone();
        for _ in 0..iterations {
            // u = μ / (K v), v = ν / (Kᵀ u), each as a log-sum-exp.
            log_u = (&log_kernel + log_v.transpose(1, 2)).logsumexp([2], true).neg() + log_marginal;
            log_v = (&log_kernel + &log_u).logsumexp([1], true).transpose(1, 2).neg() + log_marginal;
        }
        (log_u + log_kernel + log_v.transpose(1, 2)).exp()
    })
}

/// `source` rearranged onto `target`'s positions: position i of the result is
/// `P · Σ_j plan[i, j] · source_j` (the plan scaled by the number of positions). Gradients reach
/// `source` through the rearranged values only; `target` only shapes the plan, which carries none.
pub fn align(source: &Tensor, target: &Tensor, epsilon: f64, iterations: usize) -> Tensor {
    let plan = sinkhorn_plan(target, source, epsilon, iterations);
    let size = source.size();
    let p = size[2] * size[3];
    let vs = source.flatten(2, -1).transpose(1, 2).to_kind(Kind::Float);
    (plan.matmul(&vs) * p as f64).transpose(1, 2).reshape(size.as_slice()).to_kind(source.kind())
}

/// The feature-level policies a config can name.
#[derive(Clone, Debug)]
pub enum FeatureMix {
    Manifold(ManifoldMix),
    Align(AlignMix),
    /// The reference's CIFAR AlignMix setting: ManifoldMix or AlignMix with probability ½ each.
    ManifoldOrAlign(ManifoldMix, AlignMix),
    /// TransMix: label weights from a ViT's class-token attention.
    Transmix(super::transmix::TransMix),
}

impl FeatureMix {
    pub fn forward(
        &self,
        net: &dyn StagedNet,
        x: &Tensor,
        y: &Tensor,
        train: bool,
        rng: &mut SamixRng,
    ) -> Result<MixedForward> {
        match self {
            FeatureMix::Manifold(m) => m.forward(net, x, y, train, rng),
            FeatureMix::Align(a) => a.forward(net, x, y, train, rng),
            FeatureMix::Transmix(t) => t.forward(net, x, y, train, rng),
            FeatureMix::ManifoldOrAlign(m, a) => {
                if rng.gen_bool(0.5) {
                    m.forward(net, x, y, train, rng)
                } else {
                    a.forward(net, x, y, train, rng)
                }
            }
        }
    }
}
