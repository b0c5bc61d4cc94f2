//! Online SAMix / AutoMix for supervised learning (SAMIX_SPEC.md §3): the online network
//! (backbone + `head_one` = its classifier, `head_mix`), its EMA copy (frozen, the critic), and the
//! Mixer. One step draws two λ and two pairings, trains the Mixer through the EMA critic
//! (Mixer branch), trains the online network on clean images and on detached learned masks
//! (backbone branch), then updates the EMA. Touches only these networks and the run directory's
//! visuals / Mixer artifact.
use super::sgd::{ParamGroup, Sgd};
use super::{eval, Learner, StepContext};
use crate::config::{ModelConfig, OptimConfig, ResolvedSamix, ScheduleConfig, TrainConfig};
use crate::data::loader::{Batch, Loader};
use crate::loss::{cross_entropy, mixup_cross_entropy};
use crate::mix::{mix_targets_t, random_pairing, random_pairing_on_device, LambdaSampler};
use crate::mixer::{apply_mask, mask_loss, Mixer, MixerConfig, MixerShape};
use crate::model::{LinearHead, Network, StagedNet};
use crate::rng::SamixRng;
use crate::train::schedule::CosineSchedule;
use crate::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// The networks of online SAMix, all in one VarStore: `q.*` online, `k.*` EMA, `mixer.*`.
pub struct SamixNets {
    pub net_q: Network,
    pub head_mix_q: LinearHead,
    pub net_k: Network,
    pub head_mix_k: LinearHead,
    pub mixer: Mixer,
    pub mask_stage: usize,
    /// (EMA parameter, online parameter) pairs; BN running statistics are not among them.
    ema_pairs: Vec<(Tensor, Tensor)>,
}

/// The random draws of one step. The λs and the adjust flag are 0-dim float tensors: host
/// scalars when drawn from the run's streams ([`SamixNets::draw`]), device tensors when drawn
/// by libtorch on the device ([`SamixNets::draw_on_device`], for CUDA-graph capture).
#[derive(Debug)]
pub struct Draws {
    pub lam_mb: Tensor,
    pub lam_bb: Tensor,
    pub perm_mb: Tensor,
    pub perm_bb: Tensor,
    /// 1 when this step rescales the backbone mask to its λ's area (probability `mask_adjust`).
    pub adjust_bb: Tensor,
}

/// The four loss terms of a step; their sum is what one optimiser step minimises.
pub struct SamixLosses {
    /// CE of the online network on clean images (trains θ_q, head_one_q).
    pub one_q: Tensor,
    /// Mixup CE of the online network on backbone-branch images (trains θ_q, head_mix_q).
    pub mix_q: Tensor,
    /// Mixer-branch loss through the frozen EMA critic (trains the Mixer only).
    pub mix_k: Tensor,
    /// Weighted mask regulariser (trains the Mixer only).
    pub mask: Tensor,
    pub s_mb: Tensor,
    pub s_bb: Tensor,
}

impl SamixLosses {
    pub fn total(&self) -> Tensor {
        &self.one_q + &self.mix_q + &self.mix_k + &self.mask
    }
}

impl SamixNets {
    /// Builds the networks for `image_size`-pixel images; the EMA side starts as a copy of the
    /// online side and is frozen.
    pub fn new(vs: &VarStore, model: &ModelConfig, r: &ResolvedSamix, in_channels: i64, classes: i64, image_size: i64) -> Result<Self> {
        let root = vs.root();
        let net_q = Network::new(&(&root / "q"), model, in_channels, classes)?;
        let net_k = Network::new(&(&root / "k"), model, in_channels, classes)?;
        let stages = net_q.stage_channels();
        let last = *stages.last().unwrap_or(&1);
        let head_mix_q = LinearHead::new(&(&root / "q" / "head_mix"), last, classes);
        let head_mix_k = LinearHead::new(&(&root / "k" / "head_mix"), last, classes);
        let stage = r.cfg.mask_stage;
        if stage + 1 >= stages.len() {
            return Err(Error::config("mix.mask_stage", format!("the network has {} stages; the Mixer needs one before the last", stages.len())));
        }
        // The upsampling factor is whatever maps the Mixer's feature map back onto the image.
        let probe = tch::no_grad(|| net_q.features(&Tensor::zeros([1, in_channels, image_size, image_size], (Kind::Float, vs.device())), false, &[stage]).1);
        let side = probe.first().map_or(1, |f| f.size()[3]).max(1);
        if image_size % side != 0 {
            return Err(Error::config("mix.mask_stage", format!("stage {stage} is {side} px wide, which does not divide the {image_size} px image")));
        }
        let shape = MixerShape { in_channels: stages[stage], scale: image_size / side };
        let mixer = Mixer::new(&(&root / "mixer"), &r.mixer, shape);
        let vars = vs.variables();
        let mut ema_pairs = Vec::new();
        tch::no_grad(|| {
            for (name, mut k) in vars.iter().filter(|(n, _)| n.starts_with("k.")).map(|(n, t)| (n.clone(), t.shallow_clone())) {
                let q = &vars[&format!("q.{}", &name[2..])];
                k.copy_(q);
                let is_param = q.requires_grad();
                let _ = k.set_requires_grad(false);
                if is_param {
                    ema_pairs.push((k, q.shallow_clone()));
                }
            }
        });
        Ok(SamixNets { net_q, head_mix_q, net_k, head_mix_k, mixer, mask_stage: stage, ema_pairs })
    }

    /// `p_k ← m·p_k + (1 − m)·p_q` over parameters, in torch's multi-tensor lerp kernel (one
    /// launch per ~dozens of tensors instead of one per tensor); m ≥ 1 leaves the EMA side as it is.
    pub fn ema_update(&mut self, momentum: f64) -> Result<()> {
        if momentum >= 1.0 {
            return Ok(());
        }
        let (ema, online): (Vec<&Tensor>, Vec<&Tensor>) = self.ema_pairs.iter().map(|(k, q)| (k, q)).unzip();
        tch::no_grad(|| crate::native::foreach_lerp(&ema, &online, 1.0 - momentum))
    }

    /// The draws of a step from the run's random stream (what training uses: reproducible
    /// and independent of the device).
    pub fn draw(r: &ResolvedSamix, lambda: &LambdaSampler, n: usize, rng: &mut SamixRng, device: Device) -> Draws {
        let (lam_mb, lam_bb) = (lambda.sample(rng), lambda.sample(rng));
        let perm_bb = random_pairing(n, rng, device);
        let perm_mb = random_pairing(n, rng, device);
        let adjust_bb = rng.gen::<f64>() < r.cfg.mask_adjust;
        let scalar = |v: f64| Tensor::from(v as f32);
        Draws { lam_mb: scalar(lam_mb), lam_bb: scalar(lam_bb), perm_mb, perm_bb, adjust_bb: scalar(if adjust_bb { 1.0 } else { 0.0 }) }
    }

    /// The same draws made on `device` by libtorch's generator: nothing reaches the host, so a
    /// captured step draws afresh at each replay.
    pub fn draw_on_device(r: &ResolvedSamix, lambda: &LambdaSampler, n: usize, device: Device) -> Draws {
        let (lam_mb, lam_bb) = (lambda.sample_on_device(&[], device), lambda.sample_on_device(&[], device));
        let perm_bb = random_pairing_on_device(n, device);
        let perm_mb = random_pairing_on_device(n, device);
        let adjust_bb = Tensor::rand([], (Kind::Float, device)).lt(r.cfg.mask_adjust).to_kind(Kind::Float);
        Draws { lam_mb, lam_bb, perm_mb, perm_bb, adjust_bb }
    }

    /// The loss terms of one step on a batch (§3 steps 3–10).
    pub fn losses(&self, r: &ResolvedSamix, x: &Tensor, y: &Tensor, d: &Draws, smoothing: f64) -> SamixLosses {
        // The EMA encoder runs in train mode, as the reference's: its BN uses batch statistics
        // and keeps its own running statistics.
        let f = tch::no_grad(|| self.net_k.features(x, true, &[self.mask_stage]).1.remove(0));
        let s_mb = self.mixer.mask(&f, &d.perm_mb, &d.lam_mb, true);
        let s_bb = tch::no_grad(|| self.mixer.mask(&f, &d.perm_bb, &d.lam_bb, true));
        let adjust = (r.cfg.mask_adjust > 0.0).then_some(&d.adjust_bb);
        let s_bb = backbone_mask(s_bb, &d.lam_bb, adjust, r.cfg.lam_margin);
        let mask = mask_loss(&s_mb, &d.lam_mb, &r.mask_loss);
        let x_mb = apply_mask(x, &x.index_select(0, &d.perm_mb), &s_mb);
        let x_bb = apply_mask(x, &x.index_select(0, &d.perm_bb), &s_bb);
        let (t_mb, t_bb) = (mix_targets_t(y, &d.perm_mb, &d.lam_mb), mix_targets_t(y, &d.perm_bb, &d.lam_bb));
        let z_k = self.net_k.features(&x_mb, true, &[]).0.apply(&self.head_mix_k);
        let mix_k = r.mixer_loss.compute(&z_k, &t_mb);
        let one_q = cross_entropy(&self.net_q.forward_t(x, true), y, smoothing);
        let z_mix = self.net_q.features(&x_bb, true, &[]).0.apply(&self.head_mix_q);
        let mix_q = mixup_cross_entropy(&z_mix, &t_bb, smoothing);
        SamixLosses { one_q, mix_q, mix_k, mask, s_mb, s_bb }
    }

    /// Logits of the four predictors (eval mode): one_k (deployment), mix_k, one_q, mix_q.
    pub fn head_logits(&self, x: &Tensor) -> Vec<Tensor> {
        let hk = self.net_k.features(x, false, &[]).0;
        let hq = self.net_q.features(x, false, &[]).0;
        vec![self.net_k.head(&hk), hk.apply(&self.head_mix_k), self.net_q.head(&hq), hq.apply(&self.head_mix_q)]
    }
}

pub const HEADS: [&str; 4] = ["one_k", "mix_k", "one_q", "mix_q"];

/// Post-processing of the detached backbone mask: rescaling of each sample's mask so the first
/// image covers exactly λ of the pixels where `adjust` is 1 (§3.3, to the mask's own λ; `None`
/// when `mask_adjust` is 0), then the plain-mixup fallback for extreme λ (§3.4). Both are blends
/// with 0/1 weights rather than host branches, so they work on device-drawn λ (exact: `s·1 + 0`).
pub fn backbone_mask(s: Tensor, lam: &Tensor, adjust: Option<&Tensor>, lam_margin: f64) -> Tensor {
    let s = match adjust {
        Some(a) => {
            let a = a.to_kind(s.kind());
            &s * (1.0 - &a) + adjust_area(&s, lam) * &a
        }
        None => s,
    };
    let lam = lam.to_kind(s.kind());
    let one_minus: Tensor = 1.0 - &lam;
    let keep = lam.gt(lam_margin).logical_and(&one_minus.gt(lam_margin)).to_kind(s.kind());
    &s * &keep + one_minus * (1.0 - keep)
}

/// Rescales `s` per sample so that `mean(1 − s) = lam` (the first image's share).
pub fn adjust_area(s: &Tensor, lam: &Tensor) -> Tensor {
    let lam = lam.to_kind(s.kind());
    let first: Tensor = (-s + 1.0).clamp(1e-8, 1.0 - 1e-8);
    let mu = first.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    let second: Tensor = -&first + 1.0;
    let shrink_first: Tensor = -(&first * (mu.reciprocal() * &lam)) + 1.0;
    let shrink_second: Tensor = &second * ((-&mu + 1.0).reciprocal() * (1.0 - &lam));
    let too_much_first = mu.gt_tensor(&(&lam + 1e-8));
    let too_little_first = mu.lt_tensor(&(&lam - 1e-8));
    shrink_first.where_self(&too_much_first, &shrink_second.where_self(&too_little_first, s))
}

/// What `mixer.json` says about a saved Mixer, so it can be reused frozen (SAMix-P).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MixerArtifact {
    pub backbone: ModelConfig,
    pub in_channels: i64,
    pub num_classes: i64,
    pub image_size: i64,
    pub mask_stage: usize,
    pub mixer: MixerConfig,
    pub shape: MixerShape,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Variables in `mixer.safetensors`: `mixer.*` (the Mixer) and `k.*` (the EMA encoder with
    /// its heads and BN statistics).
    pub prefixes: Vec<String>,
}

/// The SAMix learner plugged into the common training loop.
pub struct SamixLearner {
    pub vs: VarStore,
    pub nets: SamixNets,
    resolved: ResolvedSamix,
    lambda: LambdaSampler,
    sgd: Sgd,
    backbone_lr: CosineSchedule,
    mixer_lr: CosineSchedule,
    smoothing: f64,
    precision: crate::native::Precision,
    sums: BTreeMap<&'static str, Tensor>,
    steps_in_epoch: usize,
    visual: Option<super::visual::MaskVisuals>,
    artifact: MixerArtifact,
}

impl SamixLearner {
    pub fn new(cfg: &TrainConfig, r: ResolvedSamix, info: &crate::data::DatasetInfo, image_size: i64, device: Device) -> Result<Self> {
        super::seed_init(cfg.seed);
        let vs = VarStore::new(device);
        let (channels, classes) = (info.channels as i64, info.num_classes as i64);
        let nets = SamixNets::new(&vs, &cfg.model, &r, channels, classes, image_size)?;
        let mo = &r.cfg.mixer_optim;
        let mixer_optim = OptimConfig {
            lr: mo.lr.unwrap_or(cfg.optim.lr),
            momentum: mo.momentum.unwrap_or(cfg.optim.momentum),
            weight_decay: mo.weight_decay.unwrap_or(cfg.optim.weight_decay),
            nesterov: cfg.optim.nesterov && mo.momentum.unwrap_or(cfg.optim.momentum) > 0.0,
        };
        let sgd = Sgd::with_groups(&vs, &cfg.optim, &[ParamGroup { prefix: "mixer.".into(), cfg: mixer_optim.clone() }]);
        let backbone_lr = CosineSchedule::new(cfg.optim.lr, cfg.train.epochs, &cfg.schedule);
        let mixer_schedule = ScheduleConfig { min_lr: mo.min_lr.unwrap_or(cfg.schedule.min_lr).min(mixer_optim.lr), ..cfg.schedule.clone() };
        let mixer_lr = CosineSchedule::new(mixer_optim.lr, cfg.train.epochs, &mixer_schedule);
        let artifact = MixerArtifact {
            backbone: cfg.model.clone(),
            in_channels: channels,
            num_classes: classes,
            image_size,
            mask_stage: nets.mask_stage,
            mixer: r.mixer.clone(),
            shape: nets.mixer.shape(),
            mean: info.mean.clone(),
            std: info.std.clone(),
            prefixes: vec!["mixer.".into(), "k.".into()],
        };
        Ok(SamixLearner {
            lambda: LambdaSampler::new(r.cfg.alpha)?,
            vs,
            nets,
            resolved: r,
            sgd,
            backbone_lr,
            mixer_lr,
            smoothing: cfg.train.label_smoothing,
            precision: cfg.train.precision,
            sums: BTreeMap::new(),
            steps_in_epoch: 0,
            visual: None,
            artifact,
        })
    }

    /// Fixes the images the mask grids show (a few test images, normalised as for training).
    pub fn set_visual_batch(&mut self, images: Tensor, mean: Vec<f32>, std: Vec<f32>) {
        self.visual = Some(super::visual::MaskVisuals::new(images, mean, std));
    }

    /// Saves the Mixer with its EMA encoder as a standalone artifact.
    pub fn save_mixer(&self, dir: &Path) -> Result<()> {
        let vars = super::checkpoint::contiguous(self.vs.variables().into_iter().filter(|(n, _)| self.artifact.prefixes.iter().any(|p| n.starts_with(p.as_str()))));
        let tmp = dir.join("mixer.safetensors.tmp");
        Tensor::write_safetensors(&vars, &tmp)?;
        std::fs::rename(&tmp, dir.join("mixer.safetensors")).map_err(|e| Error::io(dir.join("mixer.safetensors"), e))?;
        let json = serde_json::to_string_pretty(&self.artifact).unwrap_or_default();
        super::metrics::write_atomic(&dir.join("mixer.json"), json.as_bytes())
    }
}

impl Learner for SamixLearner {
    fn var_store(&self) -> &VarStore {
        &self.vs
    }
    fn var_store_mut(&mut self) -> &mut VarStore {
        &mut self.vs
    }
    fn optimizer(&self) -> &Sgd {
        &self.sgd
    }
    fn optimizer_mut(&mut self) -> &mut Sgd {
        &mut self.sgd
    }

    fn train_step(&mut self, batch: &Batch, ctx: &StepContext, rng: &mut SamixRng) -> Result<(Tensor, f64)> {
        let momentum = self.resolved.cfg.ema.momentum_at(ctx.global_step, ctx.total_steps);
        let d = SamixNets::draw(&self.resolved, &self.lambda, batch.len(), rng, batch.images.device());
        let losses = crate::native::with_precision(self.precision, batch.images.device(), true, || self.nets.losses(&self.resolved, &batch.images, &batch.labels, &d, self.smoothing))?;
        let total = losses.total();
        let lr = self.backbone_lr.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        let mixer_lr = self.mixer_lr.lr(ctx.epoch, ctx.iter, ctx.iters_per_epoch);
        self.sgd.zero_grad();
        total.backward();
        self.sgd.step_groups(&[lr, mixer_lr])?;
        self.nets.ema_update(momentum)?;
        for (name, t) in [("loss_one_q", &losses.one_q), ("loss_mix_q", &losses.mix_q), ("loss_mix_k", &losses.mix_k), ("loss_mask", &losses.mask)] {
            let v = t.detach();
            let entry = self.sums.entry(name).or_insert_with(|| v.zeros_like());
            *entry += v;
        }
        self.steps_in_epoch += 1;
        Ok((total.detach(), lr))
    }

    fn epoch_extras(&mut self) -> BTreeMap<String, f64> {
        let n = self.steps_in_epoch.max(1) as f64;
        let out = self.sums.iter().map(|(k, v)| (k.to_string(), v.double_value(&[]) / n)).collect();
        self.sums.clear();
        self.steps_in_epoch = 0;
        out
    }

    fn evaluate(&self, loader: &Loader) -> Result<eval::Evaluation> {
        let results = eval::evaluate_heads(loader, HEADS.len(), |x| self.nets.head_logits(x))?;
        let mut heads = BTreeMap::new();
        for (name, r) in HEADS.iter().zip(&results) {
            heads.insert(format!("acc1_{name}"), r.acc1);
            heads.insert(format!("acc5_{name}"), r.acc5);
        }
        Ok(eval::Evaluation { primary: results[0], heads })
    }

    fn on_epoch_end(&mut self, epoch: usize, total_epochs: usize, out: &Path) -> Result<()> {
        let every = self.resolved.cfg.visual_every;
        let due = epoch == total_epochs || (every > 0 && epoch % every == 0);
        if let (true, Some(v)) = (due, self.visual.as_mut()) {
            v.snapshot(&self.nets, epoch, out)?;
        }
        Ok(())
    }

    fn on_finish(&mut self, out: &Path) -> Result<()> {
        if let Some(v) = &self.visual {
            v.write_evolution(out)?;
        }
        self.save_mixer(out)
    }
}
