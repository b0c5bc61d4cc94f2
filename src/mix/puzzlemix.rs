//! PuzzleMix (Kim et al., ICML 2020), following the reference's CIFAR setting (docs/ALGORITHM.md §8):
//! 1. saliency `√(mean_c (∂CE/∂x)²)` of the current model (eval mode) — computed by the trainer
//!    and passed in, since it needs the model;
//! 2. a block grid of 2, 4, 8 or 16 blocks a side (drawn per batch); per sample, a 3-label MRF on
//!    the grid (labels: first image, half/half, partner) whose unary term is the normalised block
//!    saliency each choice gives up plus a Beta-prior term (η), and whose pairwise term is the
//!    label distance² weighted by β plus γ × the pixel discontinuity the two choices create at the
//!    block border; solved by α-β swap graph cuts (`graphcut.rs`);
//! 3. a greedy transport of blocks inside each image towards where that image stays visible
//!    (cost = ε × squared block distance − saliency), resolved over as many rounds as the
//!    transport grid has blocks a side; destinations nobody wins stay empty (zero), as the
//!    reference;
//! 4. `x̃ = m ⊙ T₁(x) + (1 − m) ⊙ T₂(x')`, λ per sample = mean(m).
//!
//! Energy and solver run on the host; pooling, transport and the blend run on the batch's device.
use super::{random_pairing, GridMrf, LambdaSampler, MixedBatch, MixedTargets};
use crate::rng::SamixRng;
use crate::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PuzzleMixConfig {
    pub alpha: f64,
    /// Label smoothness β (divided by blocks·16 as the reference).
    pub beta: f64,
    /// Data smoothness γ.
    pub gamma: f64,
    /// Prior weight η.
    pub eta: f64,
    pub neigh_size: usize,
    pub t_eps: f64,
    pub t_size: usize,
    pub transport: bool,
}

impl Default for PuzzleMixConfig {
    fn default() -> Self {
        PuzzleMixConfig {
            alpha: 1.0,
            beta: 1.2,
            gamma: 0.5,
            eta: 0.2,
            neigh_size: 4,
            t_eps: 0.8,
            t_size: 4,
            transport: true,
        }
    }
}

impl super::PolicyConfig for PuzzleMixConfig {
    fn check(&self, _num_stages: usize) -> Result<()> {
        self.check()
    }
    fn build_input(&self) -> Result<Box<dyn super::MixPolicy + Send>> {
        Err(super::needs_the_model())
    }
}

impl PuzzleMixConfig {
    /// Range checks; errors name the key under `mix`.
    pub fn check(&self) -> Result<()> {
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::config("mix.alpha", format!("{} is not a positive number", self.alpha)));
        }
        for (v, key) in
            [(self.beta, "mix.beta"), (self.gamma, "mix.gamma"), (self.eta, "mix.eta"), (self.t_eps, "mix.t_eps")]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(key, format!("{v} must be >= 0")));
            }
        }
        if self.neigh_size == 0 || self.t_size == 0 {
            return Err(Error::config("mix.neigh_size", "neigh_size and t_size must be at least 1"));
        }
        use crate::limits::{check_size, MAX_IMAGE_SIDE};
        check_size("mix.neigh_size", self.neigh_size, MAX_IMAGE_SIDE)?;
        check_size("mix.t_size", self.t_size, MAX_IMAGE_SIDE)?;
        Ok(())
    }
}

const N_LABELS: usize = 3;
const MAX_TRANSPORT_GRID: i64 = 16;

#[derive(Clone, Debug)]
pub struct PuzzleMix {
    cfg: PuzzleMixConfig,
    prior: LambdaSampler,
    mean: Vec<f32>,
    std: Vec<f32>,
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    let host = t.to_kind(Kind::Double).to_device(tch::Device::Cpu).flatten(0, -1).contiguous();
    let numel = host.numel();
    let mut out = vec![0.0; numel];
    host.copy_data(&mut out, numel);
    out
}

impl PuzzleMix {
    /// `mean`/`std` undo the loader's normalisation for the data-smoothness term.
    pub fn new(cfg: PuzzleMixConfig, mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        cfg.check()?;
        Ok(PuzzleMix { prior: LambdaSampler::new(cfg.alpha)?, cfg, mean, std })
    }

    fn unit(&self, x: &Tensor) -> Tensor {
        if self.mean.is_empty() {
            return x.shallow_clone();
        }
        crate::data::transform::to_unit(x, &self.mean, &self.std)
    }

    /// Block saliency `N×B×B`, each sample's blocks summing to 1.
    fn block_saliency(saliency: &Tensor, size: i64) -> Tensor {
        let n = saliency.size()[0];
        let pooled = saliency
            .unsqueeze(1)
            .avg_pool2d([size, size], [size, size], [0, 0], false, true, None::<i64>)
            .squeeze_dim(1);
        &pooled / pooled.view([n, -1]).sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-12).view([n, 1, 1])
    }

    /// Mixes `images` (normalised) using `saliency` (`N×H×W`, from the model).
    pub fn mix_with_saliency(
        &self,
        images: &Tensor,
        labels: &Tensor,
        saliency: &Tensor,
        rng: &mut SamixRng,
    ) -> MixedBatch {
        let size = images.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let device = images.device();
        let prior = self.prior.sample(rng);
        let perm = random_pairing(n as usize, rng, device);
        let grid = self.draw_grid(h, w, rng);
        let terms = self.mrf_terms(images, saliency, &perm, &grid);
        let first_weight = self.solve_first_weights(&terms, prior, n as usize, grid.blocks);
        let first_weight = Tensor::from_slice(&first_weight).view([n, 1, grid.blocks, grid.blocks]).to_device(device);
        let (first, second, first_weight) = self.transport(images, saliency, &perm, first_weight, &terms.own, &grid);
        let first_weight = first_weight.upsample_nearest2d([h, w], None, None);
        let mixed = &first * &first_weight + &second * (-&first_weight + 1.0);
        let lam = first_weight.mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
        let targets = MixedTargets { y_a: labels.shallow_clone(), y_b: labels.index_select(0, &perm), lam };
        MixedBatch { images: mixed, targets, first_weight: Some(first_weight), pairing: Some(perm) }
    }

    /// The block grid of this batch: 2, 4, 8 or 16 blocks a side (drawn), the pooling size that
    /// tiles a block, and β scaled by the grid.
    fn draw_grid(&self, h: i64, w: i64, rng: &mut SamixRng) -> BlockGrid {
        let side = gcd(h, w);
        let choices: Vec<i64> = [2i64, 4, 8, 16].into_iter().filter(|b| side % b == 0 && h / b >= 1).collect();
        let blocks = if choices.is_empty() { 1 } else { choices[rng.gen_range(0..choices.len())] };
        let block = (h / blocks).min(w / blocks);
        // The pooling must tile a block exactly: the largest divisor of the block not above the
        // configured size (the reference's sizes divide its 32 px blocks; 28 px images need this).
        let neigh = largest_divisor_up_to(block, self.cfg.neigh_size as i64);
        BlockGrid { side, blocks, block, neigh, beta: self.cfg.beta / blocks as f64 / 16.0 }
    }

    /// Unary terms (block saliency of each image, plus half the border discontinuities each
    /// choice creates) and pairwise edge weights of the MRF, per sample, on the host.
    fn mrf_terms(&self, images: &Tensor, saliency: &Tensor, perm: &Tensor, grid: &BlockGrid) -> MrfTerms {
        let (blocks, beta) = (grid.blocks, grid.beta);
        let own = Self::block_saliency(saliency, grid.block);
        let partner = own.index_select(0, perm);
        let neigh = grid.neigh;
        let pooled = self.unit(images).avg_pool2d([neigh, neigh], [neigh, neigh], [0, 0], false, true, None::<i64>);
        let pooled_partner = pooled.index_select(0, perm);
        let k = (grid.block / neigh).max(1);
        let pen = |a: &Tensor, b: &Tensor| border_penalty(a, b, k, blocks);
        let (x00, y00) = pen(&pooled_partner, &pooled_partner);
        let (x01, y01) = pen(&pooled_partner, &pooled);
        let (x10, y10) = pen(&pooled, &pooled_partner);
        let (x11, y11) = pen(&pooled, &pooled);
        let s = beta * self.cfg.gamma;
        let (x00, x01, x10, x11) = (x00 * s, x01 * s, x10 * s, x11 * s);
        let (y00, y01, y10, y11) = (y00 * s, y01 * s, y10 * s, y11 * s);
        let u_own = own.copy();
        let u_partner = partner.copy();
        if blocks > 1 {
            let b = blocks;
            let _ = u_partner.narrow(1, 0, b - 1).g_add_(&((&x10 + &x11) / 2.0));
            let _ = u_own.narrow(1, 0, b - 1).g_add_(&((&x01 + &x00) / 2.0));
            let _ = u_partner.narrow(1, 1, b - 1).g_add_(&((&x01 + &x11) / 2.0));
            let _ = u_own.narrow(1, 1, b - 1).g_add_(&((&x10 + &x00) / 2.0));
            let _ = u_partner.narrow(2, 0, b - 1).g_add_(&((&y10 + &y11) / 2.0));
            let _ = u_own.narrow(2, 0, b - 1).g_add_(&((&y01 + &y00) / 2.0));
            let _ = u_partner.narrow(2, 1, b - 1).g_add_(&((&y01 + &y11) / 2.0));
            let _ = u_own.narrow(2, 1, b - 1).g_add_(&((&y10 + &y00) / 2.0));
        }
        let w_x = (&x10 + &x01 - &x11 - &x00) / 2.0 + beta;
        let w_y = (&y10 + &y01 - &y11 - &y00) / 2.0 + beta;
        MrfTerms { u_own: to_vec(&u_own), u_partner: to_vec(&u_partner), w_x: to_vec(&w_x), w_y: to_vec(&w_y), own }
    }

    /// Per sample, the 3-label MRF over the block grid solved by α-β swap: the first image's
    /// weight per block (`n × blocks²`, row-major).
    fn solve_first_weights(&self, terms: &MrfTerms, prior: f64, n: usize, blocks: i64) -> Vec<f32> {
        let cells = (blocks * blocks) as usize;
        let eps = 1e-8;
        let prior_cost: Vec<f64> = [prior * prior, 2.0 * prior * (1.0 - prior), (1.0 - prior) * (1.0 - prior)]
            .iter()
            .map(|p| -(p + eps).ln() * self.cfg.eta / cells as f64)
            .collect();
        let pairwise: Vec<Vec<f64>> = (0..N_LABELS)
            .map(|i| (0..N_LABELS).map(|j| ((i as f64 - j as f64) / (N_LABELS - 1) as f64).powi(2)).collect())
            .collect();
        let edges_down = ((blocks - 1) * blocks) as usize;
        let mut first_weight = Vec::with_capacity(n * cells);
        for s in 0..n {
            let unary = (0..cells)
                .map(|p| {
                    (0..N_LABELS)
                        .map(|l| {
                            let partner_share = l as f64 / (N_LABELS - 1) as f64;
                            (1.0 - partner_share) * terms.u_partner[s * cells + p]
                                + partner_share * terms.u_own[s * cells + p]
                                + prior_cost[l]
                        })
                        .collect()
                })
                .collect();
            let mrf = GridMrf {
                rows: blocks as usize,
                cols: blocks as usize,
                unary,
                pairwise: pairwise.clone(),
                w_down: terms.w_x[s * edges_down..(s + 1) * edges_down].iter().map(|v| v.max(0.0)).collect(),
                w_right: terms.w_y[s * edges_down..(s + 1) * edges_down].iter().map(|v| v.max(0.0)).collect(),
            };
            let labels = mrf.alpha_beta_swap(vec![0; cells], 10);
            first_weight.extend(labels.iter().map(|&l| 1.0 - l as f32 / (N_LABELS - 1) as f32));
        }
        first_weight
    }

    /// Transports each image's blocks towards where it stays visible (when enabled and the grid
    /// has more than one block); returns both images and the first image's weight on the transport grid.
    fn transport(
        &self,
        images: &Tensor,
        saliency: &Tensor,
        perm: &Tensor,
        mut first_weight: Tensor,
        own: &Tensor,
        grid: &BlockGrid,
    ) -> (Tensor, Tensor, Tensor) {
        let (first, second) = (images.shallow_clone(), images.index_select(0, perm));
        if !self.cfg.transport || grid.blocks <= 1 {
            return (first, second, first_weight);
        }
        // Finer transport cells must tile a block, and the transport grid stays at most 16 a side
        // as in the reference (its plans are grid⁴ per sample).
        let t_size = largest_divisor_up_to(grid.block, self.cfg.t_size as i64);
        let (cells, u1) = if t_size < grid.block && grid.side / t_size <= MAX_TRANSPORT_GRID {
            let cells = grid.side / t_size;
            first_weight = first_weight.upsample_nearest2d([cells, cells], None, None);
            (cells, Self::block_saliency(saliency, t_size))
        } else {
            (grid.blocks, own.shallow_clone())
        };
        let u2 = u1.index_select(0, perm);
        let plan1 = transport_plan(&first_weight, &u1, self.cfg.t_eps);
        let plan2 = transport_plan(&(-&first_weight + 1.0), &u2, self.cfg.t_eps);
        (transport_blocks(&first, &plan1, cells), transport_blocks(&second, &plan2, cells), first_weight)
    }
}

/// The block grid PuzzleMix draws per batch.
struct BlockGrid {
    /// The image side the grid divides (gcd of height and width).
    side: i64,
    blocks: i64,
    /// Pixels per block side.
    block: i64,
    /// Pooling size for the data-smoothness term.
    neigh: i64,
    beta: f64,
}

/// The MRF's terms on the host, and the block saliency of each image on the device.
struct MrfTerms {
    u_own: Vec<f64>,
    u_partner: Vec<f64>,
    w_x: Vec<f64>,
    w_y: Vec<f64>,
    own: Tensor,
}

fn largest_divisor_up_to(n: i64, limit: i64) -> i64 {
    (1..=limit.min(n).max(1)).rev().find(|d| n % d == 0).unwrap_or(1)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Mean absolute difference across each block border between `a` above/left and `b` below/right
/// (`N×(B−1)×B` for horizontal borders, `N×B×(B−1)` for vertical ones), on images pooled so that
/// a block is `k` pooled pixels wide.
fn border_penalty(a: &Tensor, b: &Tensor, k: i64, blocks: i64) -> (Tensor, Tensor) {
    let n = a.size()[0];
    if blocks < 2 {
        let empty = Tensor::zeros([n, 0, blocks], (Kind::Float, a.device()));
        return (empty.shallow_clone(), empty.transpose(1, 2));
    }
    let rows = (1..blocks).map(|i| i * k - 1).collect::<Vec<i64>>();
    let rows = Tensor::from_slice(&rows).to_device(a.device());
    let hp = a.size()[2];
    let down =
        (a.narrow(2, 0, hp - 1) - b.narrow(2, 1, hp - 1)).abs().index_select(2, &rows).mean_dim(1, false, Kind::Float);
    let down = down.unsqueeze(1).avg_pool2d([1, k], [1, k], [0, 0], false, true, None::<i64>).squeeze_dim(1);
    let wp = a.size()[3];
    let right =
        (a.narrow(3, 0, wp - 1) - b.narrow(3, 1, wp - 1)).abs().index_select(3, &rows).mean_dim(1, false, Kind::Float);
    let right = right.unsqueeze(1).avg_pool2d([k, 1], [k, 1], [0, 0], false, true, None::<i64>).squeeze_dim(1);
    (down, right)
}

/// The greedy block assignment `N×P×P` (source block i → destination block j, at most one
/// source per destination) for a `T×T` grid: cost `ε·dist²(i, j)/(T−1)² − saliency_i·visible_j`;
/// each source takes its cheapest destination, the cheapest claimant of a destination wins, and
/// losers pay +1 on that destination; `T` rounds.
pub fn transport_plan(first_weight: &Tensor, saliency: &Tensor, eps: f64) -> Tensor {
    let n = first_weight.size()[0];
    let t = first_weight.size()[3];
    let p = t * t;
    let device = first_weight.device();
    let idx = Tensor::arange(p, (Kind::Int64, device));
    let (r, c) = (idx.floor_divide_scalar(t).to_kind(Kind::Float), idx.remainder(t).to_kind(Kind::Float));
    let dist = ((r.unsqueeze(1) - r.unsqueeze(0)).square() + (c.unsqueeze(1) - c.unsqueeze(0)).square())
        / (((t - 1).max(1)) as f64).powi(2);
    let visible = first_weight.view([n, 1, p]).gt(0.0).to_kind(Kind::Float);
    let mut cost = dist.unsqueeze(0) * eps - saliency.view([n, p, 1]) * visible;
    let mut win = Tensor::zeros([n, p, p], (Kind::Float, device));
    for _ in 0..t {
        let choice = cost.argmin(-1, true);
        let plan = Tensor::zeros([n, p, p], (Kind::Float, device)).scatter_value(-1, &choice, 1.0);
        let fight = &plan * &cost;
        let winner = fight.argmin(-2, true);
        win = Tensor::zeros([n, p, p], (Kind::Float, device)).scatter_value(-2, &winner, 1.0) * &plan;
        let lose = (-&win + 1.0) * &plan;
        cost += lose;
    }
    win
}

/// Moves the `T×T` blocks of `images` as `plan` says (destination j = Σ_i plan[i, j]·block_i).
pub fn transport_blocks(images: &Tensor, plan: &Tensor, t: i64) -> Tensor {
    let s = images.size();
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let (bh, bw) = (h / t, w / t);
    let blocks = images.view([n, c, t, bh, t, bw]).permute([0, 1, 2, 4, 3, 5]).reshape([n, c, t * t, bh * bw]);
    let moved = plan.transpose(1, 2).unsqueeze(1).matmul(&blocks);
    moved.view([n, c, t, t, bh, bw]).permute([0, 1, 2, 4, 3, 5]).reshape([n, c, h, w])
}

/// PuzzleMix's saliency `√(mean_c (∂CE/∂x)²)` of `net` in eval mode (`N×H×W`), without touching
/// parameter gradients.
pub fn input_saliency(net: &impl tch::nn::ModuleT, images: &Tensor, labels: &Tensor) -> Tensor {
    let x = images.detach().set_requires_grad(true);
    let logits = net.forward_t(&x, false);
    let loss = logits.cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::None, -100, 0.0).mean(None);
    let grad = Tensor::run_backward(&[&loss], &[&x], false, false).remove(0);
    grad.square().mean_dim(1, false, Kind::Float).sqrt()
}
