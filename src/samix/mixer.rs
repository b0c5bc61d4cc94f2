//! The learnable Mixer of SAMix / AutoMix (docs/ALGORITHM.md §4): from a feature map of the EMA
//! encoder and λ it predicts `s ∈ [0,1]^{N×1×H×W}`, the per-pixel weight of the *second*
//! (paired) image; the two-channel mask is `[1−s, s]`. Touches only its own parameters; it never
//! sees labels or the classifier.
use crate::native::compute_kind;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MixerVariant {
    /// λ-residual encoding, q/k on the concatenated pair, two-layer value net, bilinear.
    #[default]
    Samix,
    /// No λ encoding, one shared q/k conv (cross-attention), single-conv value, nearest.
    Automix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    Bilinear,
    Nearest,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixerConfig {
    pub variant: MixerVariant,
    /// q/k and value hidden channels = in_channels / reduction.
    pub reduction: i64,
    /// k of the λ rescaling g_k (SAMix; < 0 leaves λ as is). CIFAR 0.25, ImageNet −1.
    pub lam_mul_k: f64,
    /// Upsampling of the low-resolution mask (default: bilinear for SAMix, nearest for AutoMix).
    pub upsample: Option<Upsample>,
    /// Dropout on the value map (SAMix; 0 on CIFAR, 0.1 on ImageNet).
    pub value_dropout: f64,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig { variant: MixerVariant::Samix, reduction: 2, lam_mul_k: 0.25, upsample: None, value_dropout: 0.0 }
    }
}

impl MixerConfig {
    pub fn automix() -> Self {
        MixerConfig { variant: MixerVariant::Automix, ..Default::default() }
    }
    /// Range checks; errors name the key under `mix.mixer`.
    pub fn check(&self) -> crate::Result<()> {
        if self.reduction < 1 {
            return Err(crate::Error::config("mix.mixer.reduction", "must be at least 1"));
        }
        if self.lam_mul_k.is_nan() {
            return Err(crate::Error::config("mix.mixer.lam_mul_k", "must be a number (negative: no λ encoding)"));
        }
        if !(0.0..1.0).contains(&self.value_dropout) {
            return Err(crate::Error::config("mix.mixer.value_dropout", "must be in [0, 1)"));
        }
        Ok(())
    }
    pub fn upsample_mode(&self) -> Upsample {
        self.upsample.unwrap_or(match self.variant {
            MixerVariant::Samix => Upsample::Bilinear,
            MixerVariant::Automix => Upsample::Nearest,
        })
    }
}

/// `g_k(λ) = ((4/3)λ³ − 2λ² + (k+1)λ) / (k + 1/3)`: pulls λ towards ½ for the embedding
/// (g(0)=0, g(½)=½, g(1)=1, g(1−λ)=1−g(λ)). `k < 0` leaves λ unchanged; k is clipped at 10.
pub fn lambda_encoding(lam: f64, k: f64) -> f64 {
    lambda_encoding_t(&Tensor::from(lam), k).double_value(&[])
}

/// [`lambda_encoding`] of a λ tensor (any shape, on any device), evaluated in Horner form.
pub fn lambda_encoding_t(lam: &Tensor, k: f64) -> Tensor {
    if k < 0.0 {
        return lam.shallow_clone();
    }
    let k = k.min(10.0);
    let poly: Tensor = ((lam * (4.0 / 3.0) - 2.0) * lam + (k + 1.0)) * lam;
    poly / (k + 1.0 / 3.0)
}

fn mixer_conv(path: nn::Path, cin: i64, cout: i64, bias: bool) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        bias,
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 },
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(path, cin, cout, 1, cfg)
}

/// SAMix's value ("content") net on the second sample: 1×1 conv → BN → ELU → 1×1 conv → dropout.
#[derive(Debug)]
pub struct ValueNeck {
    conv1: nn::Conv2D,
    bn: nn::BatchNorm,
    conv2: nn::Conv2D,
    dropout: f64,
}

impl ValueNeck {
    pub fn new(path: &nn::Path, in_channels: i64, hidden: i64, dropout: f64) -> Self {
        ValueNeck {
            conv1: mixer_conv(path / "conv1", in_channels, hidden, false),
            bn: crate::model::batch_norm(path / "bn", hidden, 1.0),
            conv2: mixer_conv(path / "conv2", hidden, 1, false),
            dropout,
        }
    }
}

impl ModuleT for ValueNeck {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let v = x.apply(&self.conv1).apply_t(&self.bn, train).elu().apply(&self.conv2);
        if self.dropout > 0.0 {
            v.dropout(self.dropout, train)
        } else {
            v
        }
    }
}

/// AutoMix's value: one 1×1 conv with bias.
#[derive(Debug)]
pub struct LinearValue {
    conv: nn::Conv2D,
}

impl LinearValue {
    pub fn new(path: &nn::Path, in_channels: i64) -> Self {
        LinearValue { conv: mixer_conv(path / "conv", in_channels, 1, true) }
    }
}

impl ModuleT for LinearValue {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.apply(&self.conv)
    }
}

#[derive(Debug)]
// A handful are built per run and each call dispatches once; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
pub enum ValueNet {
    Neck(ValueNeck),
    Linear(LinearValue),
}

impl ModuleT for ValueNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            ValueNet::Neck(v) => v.forward_t(x, train),
            ValueNet::Linear(v) => v.forward_t(x, train),
        }
    }
}

/// Query/key projections: SAMix embeds the concatenated pair with two convs; AutoMix embeds each
/// sample with one shared conv (cross-attention from the first to the second sample).
#[derive(Debug)]
pub enum QueryKey {
    Concat { q: nn::Conv2D, k: nn::Conv2D },
    Shared { qk: nn::Conv2D },
}

impl QueryKey {
    /// `(q: N×hw×d, k: N×d×hw)` from the two (λ-encoded) feature maps.
    fn project(&self, x_i: &Tensor, x_j: &Tensor) -> (Tensor, Tensor) {
        let (q, k) = match self {
            QueryKey::Concat { q, k } => {
                let pair = Tensor::cat(&[x_i, x_j], 1);
                (pair.apply(q), pair.apply(k))
            }
            QueryKey::Shared { qk } => (x_i.apply(qk), x_j.apply(qk)),
        };
        (q.flatten(2, -1).transpose(1, 2), k.flatten(2, -1))
    }
}

/// Where the Mixer sits: channels of its input feature map and the upsampling factor to the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MixerShape {
    pub in_channels: i64,
    pub scale: i64,
}

#[derive(Debug)]
pub struct Mixer {
    qk: QueryKey,
    value: ValueNet,
    cfg: MixerConfig,
    shape: MixerShape,
    hidden: i64,
}

impl Mixer {
    pub fn new(path: &nn::Path, cfg: &MixerConfig, shape: MixerShape) -> Self {
        let c = shape.in_channels;
        let hidden = (c / cfg.reduction.max(1)).max(1);
        let (qk, value) = match cfg.variant {
            MixerVariant::Samix => (
                QueryKey::Concat {
                    q: mixer_conv(path / "query", 2 * c, hidden, true),
                    k: mixer_conv(path / "key", 2 * c, hidden, true),
                },
                ValueNet::Neck(ValueNeck::new(&(path / "value"), c, hidden, cfg.value_dropout)),
            ),
            MixerVariant::Automix => (
                QueryKey::Shared { qk: mixer_conv(path / "query", c, hidden, true) },
                ValueNet::Linear(LinearValue::new(&(path / "value"), c)),
            ),
        };
        Mixer { qk, value, cfg: cfg.clone(), shape, hidden }
    }

    pub fn config(&self) -> &MixerConfig {
        &self.cfg
    }
    pub fn shape(&self) -> MixerShape {
        self.shape
    }

    /// The Mixer's input for features `f` of the first samples, `f_pair` of their partners and
    /// the first sample's weight λ (a 0-dim tensor, on the device or a host scalar): both maps
    /// stacked along channels (`N×2C×h×w`), with SAMix's residual λ encoding `x_i·(1+λ')`,
    /// `x_j·(1+(1−λ'))` applied.
    pub fn encode_pair(&self, f: &Tensor, f_pair: &Tensor, lam: &Tensor) -> Tensor {
        match self.cfg.variant {
            MixerVariant::Samix => {
                let l = lambda_encoding_t(&lam.to_kind(f.kind()), self.cfg.lam_mul_k);
                Tensor::cat(&[f * (1.0 + &l), f_pair * (2.0 - &l)], 1)
            }
            MixerVariant::Automix => Tensor::cat(&[f, f_pair], 1),
        }
    }

    /// `s`, the weight map of the paired image, for the pairing `perm` (sample n with `perm[n]`).
    pub fn mask(&self, f: &Tensor, perm: &Tensor, lam: &Tensor, train: bool) -> Tensor {
        self.mask_of(f, &f.index_select(0, perm), lam, train)
    }

    /// `s` for features `f` of the first samples and `f_pair` of their partners, given
    /// explicitly (self-supervised SAMix pairs two different views).
    pub fn mask_of(&self, f: &Tensor, f_pair: &Tensor, lam: &Tensor, train: bool) -> Tensor {
        self.forward_t(&self.encode_pair(f, f_pair, lam), train)
    }
}

impl ModuleT for Mixer {
    /// Encoded pair (`N×2C×h×w`, from [`Mixer::encode_pair`]) → `s` (`N×1×(h·r)×(w·r)`) in [0, 1].
    fn forward_t(&self, pair: &Tensor, train: bool) -> Tensor {
        let size = pair.size();
        let (n, c, h, w) = (size[0], size[1] / 2, size[2], size[3]);
        let x_i = pair.narrow(1, 0, c);
        let x_j = pair.narrow(1, c, c);
        let (q, k) = self.qk.project(&x_i, &x_j);
        // Attention and the weighted sum in f32 (f64 for f64 inputs), as the reference forces,
        // whatever the input kind.
        let kind = compute_kind(pair.kind());
        let logits = q.to_kind(kind).matmul(&k.to_kind(kind)) / (self.hidden as f64).sqrt();
        let attention = logits.softmax(-1, kind);
        let v = self.value.forward_t(&x_j, train).flatten(2, -1).transpose(1, 2).to_kind(kind);
        let low = attention.matmul(&v).reshape([n, 1, h, w]);
        let (oh, ow) = (h * self.shape.scale, w * self.shape.scale);
        let r = self.shape.scale as f64;
        let up = match self.cfg.upsample_mode() {
            Upsample::Bilinear => low.upsample_bilinear2d([oh, ow], false, r, r),
            Upsample::Nearest => low.upsample_nearest2d([oh, ow], r, r),
        };
        up.sigmoid()
    }
}
