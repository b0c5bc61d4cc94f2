//! The layers the transformers and ConvNeXt share, as timm builds them: LayerNorm with its ε,
//! linear layers with timm's truncated-normal initialisation, the two-layer GELU MLP, and
//! stochastic depth (drop path). Touches only the parameters it creates.
use tch::{nn, Kind, Tensor};

/// torch's `trunc_normal_(t, mean 0, std, a = -2, b = 2)` (timm's default, absolute bounds),
/// in place: uniform draws between the bounds' normal CDFs mapped back through the inverse CDF.
pub fn trunc_normal_(t: &mut Tensor, std: f64) {
    let cdf = |x: f64| (1.0 + erf(x / std::f64::consts::SQRT_2)) / 2.0;
    let (lo, hi) = (cdf(-2.0 / std), cdf(2.0 / std));
    tch::no_grad(|| {
        let _ = t.uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0);
        let _ = t.erfinv_();
        let _ = t.g_mul_scalar_(std * std::f64::consts::SQRT_2);
        let _ = t.clamp_(-2.0, 2.0);
    });
}

/// erf of a host number, by libtorch (Rust's std has none).
fn erf(x: f64) -> f64 {
    Tensor::from(x).to_kind(Kind::Double).erf().double_value(&[])
}

/// A linear layer with timm's ViT initialisation: weight ~ trunc-normal(0.02), bias 0.
pub fn linear(path: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let cfg = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias: true };
    let mut layer = nn::linear(path, cin, cout, cfg);
    trunc_normal_(&mut layer.ws, 0.02);
    layer
}

/// LayerNorm over the last dimension (`c` channels), γ = 1, β = 0, with ε `eps`.
pub fn layer_norm(path: nn::Path, c: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(path, vec![c], nn::LayerNormConfig { eps, ..Default::default() })
}

/// Linear → GELU (exact) → linear, timm's `Mlp` (`fc1`, `fc2`).
#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    pub fn new(path: &nn::Path, c: i64, hidden: i64) -> Self {
        Mlp { fc1: linear(path / "fc1", c, hidden), fc2: linear(path / "fc2", hidden, c) }
    }
}

impl nn::Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).gelu("none").apply(&self.fc2)
    }
}

/// Stochastic depth: in training, each sample's residual branch `x` is dropped with probability
/// `p` and the kept ones scaled by 1/(1 − p) (timm's `drop_path`); identity otherwise. Draws
/// from libtorch's generator.
pub fn drop_path(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    let keep = 1.0 - p;
    let mut shape = vec![1i64; x.dim()];
    shape[0] = x.size()[0];
    let mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    x * (mask / keep)
}

/// The drop-path probability of each of `depth` blocks: rising linearly from 0 to `rate`
/// (timm's and the reference's schedule).
pub fn drop_path_rates(rate: f64, depth: usize) -> Vec<f64> {
    if depth <= 1 {
        return vec![0.0; depth];
    }
    (0..depth).map(|i| rate * i as f64 / (depth - 1) as f64).collect()
}
