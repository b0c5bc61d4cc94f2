//! The vision transformer as timm's `VisionTransformer` builds DeiT-T/S/B (Touvron et al., 2021):
//! a patch embedding (a p×p convolution of stride p), a class token and learned position
//! embedding, pre-norm blocks (multi-head self-attention through libtorch's
//! `scaled_dot_product_attention`, then a GELU MLP, each residual with drop path), a final
//! LayerNorm and a linear classifier on the class token. Variables carry timm's names, so timm's
//! state dicts load as they are. Each block is one stage of [`StagedNet`], so any block's output
//! can be tapped (SAMix's Mixer reads DeiT-S's 6th of 12) as a map of the patch tokens. Touches
//! only its own parameters.
use super::staged::StagedNet;
use super::transformer_layers::{drop_path, drop_path_rates, layer_norm, linear, trunc_normal_, Mlp};
use tch::{nn, nn::Module, Tensor};

/// LayerNorm ε of timm's ViTs.
const LN_EPS: f64 = 1e-6;

#[derive(Clone, Debug, PartialEq)]
pub struct VitConfig {
    pub in_channels: i64,
    pub num_classes: i64,
    /// Side of the (square) input images; the position embedding has one entry per patch.
    pub image_size: i64,
    pub patch_size: i64,
    pub embed_dim: i64,
    pub depth: usize,
    pub num_heads: i64,
    /// The MLP's hidden width over `embed_dim`.
    pub mlp_ratio: f64,
    /// The last block's drop-path probability (earlier blocks' rise linearly from 0).
    pub drop_path: f64,
}

impl VitConfig {
    fn deit(embed_dim: i64, num_heads: i64, in_channels: i64, num_classes: i64) -> Self {
        VitConfig {
            in_channels,
            num_classes,
            image_size: 224,
            patch_size: 16,
            embed_dim,
            depth: 12,
            num_heads,
            mlp_ratio: 4.0,
            drop_path: 0.0,
        }
    }
    /// DeiT-Tiny: 192 wide, 3 heads.
    pub fn deit_tiny(in_channels: i64, num_classes: i64) -> Self {
        Self::deit(192, 3, in_channels, num_classes)
    }
    /// DeiT-Small: 384 wide, 6 heads.
    pub fn deit_small(in_channels: i64, num_classes: i64) -> Self {
        Self::deit(384, 6, in_channels, num_classes)
    }
    /// DeiT-Base: 768 wide, 12 heads.
    pub fn deit_base(in_channels: i64, num_classes: i64) -> Self {
        Self::deit(768, 12, in_channels, num_classes)
    }
    /// Patches along each side.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size.max(1)
    }
}

/// Multi-head self-attention: one linear layer for q, k and v (`qkv`), the output projection.
#[derive(Debug)]
pub struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    pub fn new(path: &nn::Path, dim: i64, heads: i64) -> Self {
        Attention { qkv: linear(path / "qkv", dim, 3 * dim), proj: linear(path / "proj", dim, dim), heads }
    }
}

impl Attention {
    /// q, k and v of `x` (B × N × C), each B × heads × N × C/heads.
    fn qkv(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, n, c) = x.size3().unwrap_or((0, 0, 0));
        let qkv = x.apply(&self.qkv).reshape([b, n, 3, self.heads, c / self.heads]).permute([2, 0, 3, 1, 4]);
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    /// The heads' outputs (B × heads × N × d) merged and projected.
    fn project(&self, heads: &Tensor) -> Tensor {
        let (b, _, n, d) = heads.size4().unwrap_or((0, 0, 0, 0));
        heads.transpose(1, 2).reshape([b, n, self.heads * d]).apply(&self.proj)
    }

    /// The output and the class token's attention over the other tokens (B × (N − 1), mean over
    /// heads), computed with the softmax written out instead of the fused kernel.
    pub fn forward_with_class_attention(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (q, k, v) = self.qkv(x);
        let scale = 1.0 / (q.size()[3] as f64).sqrt();
        let weights = (q.matmul(&k.transpose(-2, -1)) * scale).softmax(-1, q.kind());
        let n = weights.size()[3];
        let class_attention = weights.select(2, 0).narrow(2, 1, n - 1).mean_dim(1, false, weights.kind());
        (self.project(&weights.matmul(&v)), class_attention)
    }
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (q, k, v) = self.qkv(x);
        self.project(&Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false))
    }
}

/// A pre-norm transformer block: `x + dp(attn(norm1(x)))`, then `x + dp(mlp(norm2(x)))`.
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    drop_path: f64,
}

impl Block {
    pub fn new(path: &nn::Path, dim: i64, heads: i64, mlp_ratio: f64, drop_path: f64) -> Self {
        Block {
            norm1: layer_norm(path / "norm1", dim, LN_EPS),
            attn: Attention::new(&(path / "attn"), dim, heads),
            norm2: layer_norm(path / "norm2", dim, LN_EPS),
            mlp: Mlp::new(&(path / "mlp"), dim, (dim as f64 * mlp_ratio) as i64),
            drop_path,
        }
    }
}

impl Block {
    /// As `forward_t`, also returning the class token's attention (see [`Attention`]).
    pub fn forward_with_class_attention(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let (out, attention) = self.attn.forward_with_class_attention(&x.apply(&self.norm1));
        (self.residuals(x, &out, train), attention)
    }

    /// The block's two residual steps around `attended`, the attention's output on `x`.
    fn residuals(&self, x: &Tensor, attended: &Tensor, train: bool) -> Tensor {
        let x = x + drop_path(attended, self.drop_path, train);
        &x + drop_path(&x.apply(&self.norm2).apply(&self.mlp), self.drop_path, train)
    }
}

impl nn::ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.residuals(x, &x.apply(&self.norm1).apply(&self.attn), train)
    }
}

#[derive(Debug)]
pub struct VisionTransformer {
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    head: nn::Linear,
    config: VitConfig,
}

impl VisionTransformer {
    /// Builds the network with timm's initialisation: position embedding trunc-normal(0.02),
    /// class token normal(1e-6), linear layers trunc-normal(0.02) with zero bias, LayerNorms 1/0,
    /// the patch convolution with torch's default.
    pub fn new(path: &nn::Path, cfg: &VitConfig) -> Self {
        let d = cfg.embed_dim;
        let conv = nn::ConvConfig { stride: cfg.patch_size, ..Default::default() };
        let patch_embed = nn::conv2d(path / "patch_embed" / "proj", cfg.in_channels, d, cfg.patch_size, conv);
        let cls_token = path.var("cls_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 1e-6 });
        let mut pos_embed = path.var("pos_embed", &[1, 1 + cfg.grid() * cfg.grid(), d], nn::Init::Const(0.0));
        trunc_normal_(&mut pos_embed, 0.02);
        let rates = drop_path_rates(cfg.drop_path, cfg.depth);
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(&(path / "blocks" / i), d, cfg.num_heads, cfg.mlp_ratio, rates[i]))
            .collect();
        VisionTransformer {
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm: layer_norm(path / "norm", d, LN_EPS),
            head: linear(path / "head", d, cfg.num_classes),
            config: cfg.clone(),
        }
    }

    pub fn config(&self) -> &VitConfig {
        &self.config
    }
}

impl StagedNet for VisionTransformer {
    fn num_stages(&self) -> usize {
        self.blocks.len()
    }
    /// Patch tokens with the class token in front, plus the position embedding: (B, 1 + N, D).
    fn stem_t(&self, x: &Tensor, _train: bool) -> Tensor {
        let tokens = x.apply(&self.patch_embed).flatten(2, -1).transpose(1, 2);
        let b = tokens.size()[0];
        let cls = self.cls_token.expand([b, -1, -1], false).to_kind(tokens.kind());
        let pos = self.pos_embed.to_kind(tokens.kind());
        Tensor::cat(&[cls, tokens], 1) + pos
    }
    fn stage_t(&self, i: usize, h: &Tensor, train: bool) -> Tensor {
        nn::ModuleT::forward_t(&self.blocks[i], h, train)
    }
    fn pool(&self, h: &Tensor) -> Tensor {
        // LayerNorm is per token: normalising the class token alone gives its row of the whole.
        h.select(1, 0).apply(&self.norm)
    }
    fn classifier(&self, pooled: &Tensor) -> Tensor {
        pooled.apply(&self.head)
    }
    /// The patch tokens (class token left out) laid out on their grid: (B, D, H/p, W/p).
    fn stage_map(&self, _i: usize, h: &Tensor) -> Tensor {
        let (b, n, d) = h.size3().unwrap_or((0, 0, 0));
        let side = ((n - 1) as f64).sqrt().round() as i64;
        h.narrow(1, 1, n - 1).transpose(1, 2).reshape([b, d, side, side])
    }
    fn forward_with_class_attention(&self, x: &Tensor, train: bool) -> Option<(Tensor, Tensor)> {
        let (last, earlier) = self.blocks.split_last()?;
        let mut h = self.stem_t(x, train);
        for block in earlier {
            h = nn::ModuleT::forward_t(block, &h, train);
        }
        let (h, attention) = last.forward_with_class_attention(&h, train);
        Some((self.head(&h), attention))
    }
    fn stage_channels(&self) -> Vec<i64> {
        vec![self.config.embed_dim; self.blocks.len()]
    }
    fn in_channels(&self) -> i64 {
        self.config.in_channels
    }
    fn num_classes(&self) -> i64 {
        self.config.num_classes
    }
}
