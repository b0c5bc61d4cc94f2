//! Swin Transformer (Liu et al., 2021) as timm 1.0 builds Swin-T: a 4×4 patch embedding with
//! LayerNorm, four stages (the later three open with patch merging: 2×2 neighbours concatenated,
//! LayerNorm, a linear map to twice the width), blocks of window attention (7×7 windows with a
//! learned relative-position bias; every second block shifts the windows by half a window and
//! masks attention across the wrapped edges) and a GELU MLP, each residual with drop path; the
//! head normalises, averages over positions and classifies. Tokens stay NHWC between stages; a
//! stage's map is the NCHW view. Variables carry timm's names. Touches only its own parameters.
use super::staged::StagedNet;
use super::transformer_layers::{drop_path, drop_path_rates, layer_norm, linear, trunc_normal_, Mlp};
use tch::{nn, Device, Kind, Tensor};

/// LayerNorm ε of timm's Swin (torch's default).
const LN_EPS: f64 = 1e-5;

#[derive(Clone, Debug, PartialEq)]
pub struct SwinConfig {
    pub in_channels: i64,
    pub num_classes: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub window: i64,
    /// The first stage's width (doubling per stage) and heads (doubling per stage).
    pub embed_dim: i64,
    pub heads: i64,
    pub depths: Vec<usize>,
    pub drop_path: f64,
}

impl SwinConfig {
    /// Swin-T: width 96, heads 3-6-12-24, depths 2-2-6-2, 4-px patches, 7×7 windows, 224 px.
    pub fn tiny(in_channels: i64, num_classes: i64) -> Self {
        SwinConfig {
            in_channels,
            num_classes,
            image_size: 224,
            patch_size: 4,
            window: 7,
            embed_dim: 96,
            heads: 3,
            depths: vec![2, 2, 6, 2],
            drop_path: 0.0,
        }
    }
    /// Each stage's side in tokens.
    pub fn resolutions(&self) -> Vec<i64> {
        let first = self.image_size / self.patch_size.max(1);
        (0..self.depths.len()).map(|i| first >> i).collect()
    }
}

/// (B·windows) × w² × C windows of a B × H × W × C map, in (batch, window row, window column) order.
fn partition(x: &Tensor, w: i64) -> Tensor {
    let (b, h, wd, c) = x.size4().unwrap_or((0, 0, 0, 0));
    x.view([b, h / w, w, wd / w, w, c]).permute([0, 1, 3, 2, 4, 5]).reshape([-1, w * w, c])
}

/// The inverse of [`partition`] for a `b × h × wd` map.
fn reverse(windows: &Tensor, w: i64, b: i64, h: i64, wd: i64) -> Tensor {
    let c = windows.size()[2];
    windows.view([b, h / w, wd / w, w, w, c]).permute([0, 1, 3, 2, 4, 5]).reshape([b, h, wd, c])
}

/// Swin's relative-position index of a w × w window: (w² × w²) indices into the (2w − 1)² table.
fn relative_position_index(w: i64, device: Device) -> Tensor {
    let coords: Vec<(i64, i64)> = (0..w).flat_map(|i| (0..w).map(move |j| (i, j))).collect();
    let index: Vec<i64> = coords
        .iter()
        .flat_map(|a| coords.iter().map(move |b| (a.0 - b.0 + w - 1) * (2 * w - 1) + (a.1 - b.1 + w - 1)))
        .collect();
    Tensor::from_slice(&index).to_device(device)
}

/// The additive mask of a shifted block on a `res × res` map (windows × w² × w²): −100 between
/// tokens that the cyclic shift brought from different regions, 0 elsewhere.
fn shift_mask(res: i64, w: i64, shift: i64, device: Device) -> Tensor {
    let region = |p: i64| {
        if p < res - w {
            0
        } else if p < res - shift {
            1
        } else {
            2
        }
    };
    let labels: Vec<f32> = (0..res).flat_map(|i| (0..res).map(move |j| (region(i) * 3 + region(j)) as f32)).collect();
    let windows = partition(&Tensor::from_slice(&labels).view([1, res, res, 1]), w).squeeze_dim(2);
    let differ = windows.unsqueeze(1).ne_tensor(&windows.unsqueeze(2));
    (differ.to_kind(Kind::Float) * -100.0).to_device(device)
}

#[derive(Debug)]
pub struct WindowAttention {
    qkv: nn::Linear,
    proj: nn::Linear,
    bias_table: Tensor,
    index: Tensor,
    heads: i64,
}

impl WindowAttention {
    fn new(path: &nn::Path, dim: i64, heads: i64, w: i64) -> Self {
        let mut bias_table =
            path.var("relative_position_bias_table", &[(2 * w - 1) * (2 * w - 1), heads], nn::Init::Const(0.0));
        trunc_normal_(&mut bias_table, 0.02);
        WindowAttention {
            qkv: linear(path / "qkv", dim, 3 * dim),
            proj: linear(path / "proj", dim, dim),
            bias_table,
            index: relative_position_index(w, path.device()),
            heads,
        }
    }

    /// Attention within each window of `x` ((B·windows) × N × C), with the relative-position
    /// bias and, for a shifted block, `mask` (windows × N × N).
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let (bw, n, c) = x.size3().unwrap_or((0, 0, 0));
        let qkv = x.apply(&self.qkv).reshape([bw, n, 3, self.heads, c / self.heads]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let bias = self.bias_table.index_select(0, &self.index).view([n, n, self.heads]).permute([2, 0, 1]);
        let bias = bias.to_kind(q.kind());
        let out = match mask {
            None => Tensor::scaled_dot_product_attention(&q, &k, &v, Some(bias), 0.0, false, None, false),
            Some(m) => {
                // Windows as their own batch dimension, so the mask broadcasts over images.
                let windows = m.size()[0];
                let split = |t: &Tensor| t.view([-1, windows, self.heads, n, c / self.heads]);
                let additive = bias.unsqueeze(0) + m.unsqueeze(1).to_kind(q.kind());
                let out = Tensor::scaled_dot_product_attention(
                    &split(&q),
                    &split(&k),
                    &split(&v),
                    Some(additive),
                    0.0,
                    false,
                    None,
                    false,
                );
                out.view([bw, self.heads, n, c / self.heads])
            }
        };
        out.transpose(1, 2).reshape([bw, n, c]).apply(&self.proj)
    }
}

#[derive(Debug)]
pub struct SwinBlock {
    norm1: nn::LayerNorm,
    attn: WindowAttention,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    window: i64,
    shift: i64,
    mask: Option<Tensor>,
    drop_path: f64,
}

impl SwinBlock {
    fn new(path: &nn::Path, dim: i64, heads: i64, res: i64, window: i64, shifted: bool, drop_path: f64) -> Self {
        let window = window.min(res);
        let shift = if shifted && res > window { window / 2 } else { 0 };
        SwinBlock {
            norm1: layer_norm(path / "norm1", dim, LN_EPS),
            attn: WindowAttention::new(&(path / "attn"), dim, heads, window),
            norm2: layer_norm(path / "norm2", dim, LN_EPS),
            mlp: Mlp::new(&(path / "mlp"), dim, 4 * dim),
            window,
            shift,
            mask: (shift > 0).then(|| shift_mask(res, window, shift, path.device())),
            drop_path,
        }
    }
}

impl nn::ModuleT for SwinBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, h, w, _) = x.size4().unwrap_or((0, 0, 0, 0));
        let mut y = x.apply(&self.norm1);
        if self.shift > 0 {
            y = y.roll([-self.shift, -self.shift], [1, 2]);
        }
        let attended = self.attn.forward(&partition(&y, self.window), self.mask.as_ref());
        let mut y = reverse(&attended, self.window, b, h, w);
        if self.shift > 0 {
            y = y.roll([self.shift, self.shift], [1, 2]);
        }
        let x = x + drop_path(&y, self.drop_path, train);
        &x + drop_path(&x.apply(&self.norm2).apply(&self.mlp), self.drop_path, train)
    }
}

/// 2×2 neighbours concatenated (timm's order: row offset fastest), LayerNorm, linear to `2C`.
#[derive(Debug)]
pub struct PatchMerging {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
}

impl nn::Module for PatchMerging {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, h, w, c) = x.size4().unwrap_or((0, 0, 0, 0));
        let x = x.reshape([b, h / 2, 2, w / 2, 2, c]).permute([0, 1, 3, 4, 2, 5]).flatten(3, 5);
        x.apply(&self.norm).apply(&self.reduction)
    }
}

#[derive(Debug)]
pub struct SwinTransformer {
    patch_embed: (nn::Conv2D, nn::LayerNorm),
    stages: Vec<(Option<PatchMerging>, Vec<SwinBlock>)>,
    norm: nn::LayerNorm,
    head: nn::Linear,
    config: SwinConfig,
}

impl SwinTransformer {
    pub fn new(path: &nn::Path, cfg: &SwinConfig) -> Self {
        let pe = path / "patch_embed";
        let conv = nn::ConvConfig { stride: cfg.patch_size, ..Default::default() };
        let proj = nn::conv2d(&pe / "proj", cfg.in_channels, cfg.embed_dim, cfg.patch_size, conv);
        let mut rates = drop_path_rates(cfg.drop_path, cfg.depths.iter().sum()).into_iter();
        let mut stages = Vec::new();
        let mut dim = cfg.embed_dim;
        for (i, (&depth, res)) in cfg.depths.iter().zip(cfg.resolutions()).enumerate() {
            let sp = path / "layers" / i;
            let merge = (i > 0).then(|| {
                let ds = &sp / "downsample";
                let cfg = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: None, bias: false };
                let mut reduction = nn::linear(&ds / "reduction", 4 * dim, 2 * dim, cfg);
                trunc_normal_(&mut reduction.ws, 0.02);
                PatchMerging { norm: layer_norm(&ds / "norm", 4 * dim, LN_EPS), reduction }
            });
            if i > 0 {
                dim *= 2;
            }
            let heads = cfg.heads << i;
            let blocks = (0..depth)
                .map(|j| {
                    let rate = rates.next().unwrap_or(0.0);
                    SwinBlock::new(&(&sp / "blocks" / j), dim, heads, res, cfg.window, j % 2 == 1, rate)
                })
                .collect();
            stages.push((merge, blocks));
        }
        SwinTransformer {
            patch_embed: (proj, layer_norm(&pe / "norm", cfg.embed_dim, LN_EPS)),
            stages,
            norm: layer_norm(path / "norm", dim, LN_EPS),
            head: linear(path / "head" / "fc", dim, cfg.num_classes),
            config: cfg.clone(),
        }
    }
}

impl StagedNet for SwinTransformer {
    fn num_stages(&self) -> usize {
        self.stages.len()
    }
    fn stem_t(&self, x: &Tensor, _train: bool) -> Tensor {
        x.apply(&self.patch_embed.0).permute([0, 2, 3, 1]).apply(&self.patch_embed.1)
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        let (merge, blocks) = &self.stages[i];
        let mut h = match merge {
            Some(m) => h.apply(m),
            None => h.shallow_clone(),
        };
        for b in blocks {
            h = nn::ModuleT::forward_t(b, &h, train);
        }
        h
    }
    /// The final LayerNorm, then the mean over positions.
    fn pool(&self, h: &Tensor) -> Tensor {
        h.apply(&self.norm).mean_dim(&[1i64, 2][..], false, h.kind())
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.head)
    }
    fn stage_map(&self, _i: usize, h: &Tensor) -> Tensor {
        h.permute([0, 3, 1, 2])
    }
    fn stage_channels(&self) -> Vec<i64> {
        (0..self.stages.len()).map(|i| self.config.embed_dim << i).collect()
    }
    fn in_channels(&self) -> i64 {
        self.config.in_channels
    }
    fn num_classes(&self) -> i64 {
        self.config.num_classes
    }
}
