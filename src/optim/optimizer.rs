//! The optimiser: SGD with momentum, weight decay and optional Nesterov (torch.optim.SGD's update:
//! dampening 0, the first step seeds the buffer with the gradient) or AdamW (torch.optim.AdamW),
//! each run by torch's fused multi-tensor kernel, per parameter group, with parameter-wise weight
//! decay and optional gradient-norm clipping. Written here rather than using tch's optimizer
//! because tch does not expose optimizer state, and exact resume needs it in the checkpoint.
//! In data-parallel training it first replaces each gradient by its mean over the ranks.
//! Touches only the parameters, their gradients and its own state.
use super::{OptimConfig, OptimKind};
use crate::dist::ProcessGroup;
use crate::native;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;
use tch::{nn::VarStore, Kind, Tensor};

/// Parameters whose name starts with `prefix` use `cfg` (and their own learning rate).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub prefix: String,
    pub cfg: OptimConfig,
}

/// What the rule keeps per parameter, under the names a checkpoint stores it by
/// (`momentum.<name>`; `exp_avg.<name>`, `exp_avg_sq.<name>`, `step.<name>`).
const SGD_STATE: [&str; 1] = ["momentum"];
const ADAMW_STATE: [&str; 3] = ["exp_avg", "exp_avg_sq", "step"];

pub struct Optimizer {
    params: Vec<(String, Tensor)>,
    /// Group of each parameter: 0 = the default group, i = `groups[i]`.
    group_of: Vec<usize>,
    /// Whether each parameter is decayed (its group's `decays` rule).
    decayed: Vec<bool>,
    groups: Vec<OptimConfig>,
    /// Per parameter, its rule's state tensors in the order of `SGD_STATE` / `ADAMW_STATE`;
    /// empty until the first update (or a restore) creates them.
    state: Vec<Vec<Tensor>>,
    /// One 0-dim learning rate per group, on the parameters' device (f32: the kernel reads it
    /// at replay of a captured step).
    lr_tensors: Vec<Tensor>,
    /// The same rates as set, for f64 parameters (which get them unrounded).
    lr_values: Vec<f64>,
    /// Data-parallel training: gradients are averaged over this group (in buckets of at most
    /// this many bytes) before every update.
    sync: Option<(Arc<ProcessGroup>, usize)>,
}

impl Optimizer {
    /// Optimises every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Self {
        Self::with_groups(vs, cfg, &[])
    }

    /// As [`Optimizer::new`], with parameters matching a group's prefix in that group (first
    /// match). Gradient clipping follows the default group's `max_grad_norm`, over every parameter.
    pub fn with_groups(vs: &VarStore, default: &OptimConfig, groups: &[ParamGroup]) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let group_of: Vec<usize> = params
            .iter()
            .map(|(n, _)| groups.iter().position(|g| n.starts_with(&g.prefix)).map_or(0, |i| i + 1))
            .collect();
        let groups: Vec<OptimConfig> =
            std::iter::once(default.clone()).chain(groups.iter().map(|g| g.cfg.clone())).collect();
        let decayed = params.iter().zip(&group_of).map(|((n, p), &g)| groups[g].decays(n, &p.size())).collect();
        let state = params.iter().map(|_| Vec::new()).collect();
        let lr_tensors = groups.iter().map(|c| Tensor::full([], c.lr, (Kind::Float, vs.device()))).collect();
        let lr_values = groups.iter().map(|c| c.lr).collect();
        Optimizer { params, group_of, decayed, groups, state, lr_tensors, lr_values, sync: None }
    }

    /// Averages gradients over `group` before every update (as PyTorch's DDP does during the
    /// backward pass), in flat buckets of at most `bucket_bytes`.
    pub fn average_gradients_over(&mut self, group: Arc<ProcessGroup>, bucket_bytes: usize) {
        self.sync = Some((group, bucket_bytes));
    }

    /// The state names of a group's rule (none for SGD without momentum).
    fn state_names(cfg: &OptimConfig) -> &'static [&'static str] {
        match cfg.kind {
            OptimKind::Sgd if cfg.momentum() == 0.0 => &[],
            OptimKind::Sgd => &SGD_STATE,
            OptimKind::Adamw => &ADAMW_STATE,
        }
    }

    /// Creates every state tensor not made yet (zeros, which is what the first update would
    /// make), so that data-parallel ranks hold the same set of tensors to broadcast.
    pub fn materialize_buffers(&mut self) {
        for i in 0..self.params.len() {
            self.ensure_state(i);
        }
    }

    fn ensure_state(&mut self, i: usize) {
        let names = Self::state_names(&self.groups[self.group_of[i]]);
        if self.state[i].is_empty() && !names.is_empty() {
            let p = &self.params[i].1;
            // AdamW's step counter is a 0-dim float on the parameter's device, as torch's fused
            // AdamW keeps it; the moments and SGD's buffer have the parameter's shape.
            self.state[i] = names
                .iter()
                .map(|&n| if n == "step" { Tensor::zeros([], (Kind::Float, p.device())) } else { p.zeros_like() })
                .collect();
        }
    }

    /// Names of the optimised parameters of group `g` (0 = default).
    pub fn group_params(&self, g: usize) -> Vec<&str> {
        self.params.iter().zip(&self.group_of).filter(|(_, &gi)| gi == g).map(|((n, _), _)| n.as_str()).collect()
    }

    /// Names of the optimised parameters that get no weight decay (parameter-wise rules).
    pub fn undecayed_params(&self) -> Vec<&str> {
        self.params.iter().zip(&self.decayed).filter(|(_, &d)| !d).map(|((n, _), _)| n.as_str()).collect()
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.step_groups(&[lr])
    }

    /// One update with a learning rate per group (`lrs[g]`; the last one serves the rest).
    pub fn step_groups(&mut self, lrs: &[f64]) -> Result<()> {
        self.set_learning_rates(lrs);
        self.apply()
    }

    /// Writes this step's learning rates into the optimiser's device-side scalars (`lrs[g]`;
    /// the last one serves the rest). A fill is a kernel launch, never a host sync; kept apart
    /// from [`Optimizer::apply`] so a captured CUDA graph of the step reads the current rates.
    pub fn set_learning_rates(&mut self, lrs: &[f64]) {
        for (g, (lr_t, value)) in self.lr_tensors.iter_mut().zip(self.lr_values.iter_mut()).enumerate() {
            let lr = lrs.get(g).or(lrs.last()).copied().unwrap_or(0.0);
            let _ = lr_t.fill_(lr);
            *value = lr;
        }
    }

    /// The update with the rates last set: gradients averaged over the ranks, then clipped, then,
    /// per group and decay rule, torch's fused multi-tensor kernel over the parameters that have
    /// a gradient — a handful of launches instead of several per parameter, which is what matters
    /// on a launch-bound GPU. State is created as zeros on the first update, which reproduces
    /// torch's first step (SGD's `v = g`; AdamW's moments from zero at step 1).
    pub fn apply(&mut self) -> Result<()> {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        if let Some((group, bucket_bytes)) = &self.sync {
            // Parameter order is the same on every rank (sorted names), so the buckets match.
            group.average(&grads, *bucket_bytes)?;
        }
        if let Some(max_norm) = self.groups[0].max_grad_norm {
            let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
            native::clip_grad_norm(&defined, max_norm)?;
        }
        for g in 0..self.groups.len() {
            for decayed in [true, false] {
                self.apply_part(g, decayed, &grads)?;
            }
        }
        Ok(())
    }

    /// The fused update of group `g`'s parameters with a gradient whose decay rule is `decayed`.
    fn apply_part(&mut self, g: usize, decayed: bool, grads: &[Tensor]) -> Result<()> {
        let members: Vec<usize> = (0..self.params.len())
            .filter(|&i| self.group_of[i] == g && self.decayed[i] == decayed && grads[i].defined())
            .collect();
        let Some(&first) = members.first() else { return Ok(()) };
        members.iter().for_each(|&i| self.ensure_state(i));
        let cfg = &self.groups[g];
        let weight_decay = if decayed { cfg.weight_decay } else { 0.0 };
        let lr = match self.params[first].1.kind() {
            Kind::Double => Tensor::from(self.lr_values[g]).to_device(self.params[first].1.device()),
            _ => self.lr_tensors[g].shallow_clone(),
        };
        let params: Vec<&Tensor> = members.iter().map(|&i| &self.params[i].1).collect();
        let grads: Vec<&Tensor> = members.iter().map(|&i| &grads[i]).collect();
        let slot = |k: usize| -> Vec<&Tensor> { members.iter().map(|&i| &self.state[i][k]).collect() };
        tch::no_grad(|| match cfg.kind {
            OptimKind::Sgd => {
                let buffers = if cfg.momentum() == 0.0 { Vec::new() } else { slot(0) };
                native::fused_sgd(&params, &grads, &buffers, weight_decay, cfg.momentum(), &lr, cfg.nesterov())
            }
            OptimKind::Adamw => {
                let (m, v, t) = (slot(0), slot(1), slot(2));
                let state = native::AdamwState { exp_avgs: &m, exp_avg_sqs: &v, steps: &t };
                let hyper = native::AdamwHyper { weight_decay, ..cfg.adamw_hyper() };
                native::fused_adamw(&params, &grads, &state, &lr, hyper)
            }
        })
    }

    /// Whether any group keeps state between updates (which a resume must then restore).
    pub fn keeps_state(&self) -> bool {
        self.groups.iter().any(|g| !Self::state_names(g).is_empty())
    }

    /// The state by name (`<state>.<parameter>`), for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (((n, _), tensors), &g) in self.params.iter().zip(&self.state).zip(&self.group_of) {
            for (kind, t) in Self::state_names(&self.groups[g]).iter().zip(tensors) {
                out.push((format!("{kind}.{n}"), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`]. Every tensor must belong to an optimised
    /// parameter's rule and have the shape and kind that rule keeps (the fused kernels read a
    /// buffer as the parameter's size), and a parameter's state is whole or absent; otherwise the
    /// state is refused, naming the tensor, and nothing changes.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let refuse = |msg: String| Err(Error::Argument(format!("optimizer state: {msg}")));
        let mut map: HashMap<String, Tensor> = state.into_iter().collect();
        let mut restored = Vec::with_capacity(self.params.len());
        for ((n, p), &g) in self.params.iter().zip(&self.group_of) {
            let mut tensors = Vec::new();
            for &kind in Self::state_names(&self.groups[g]) {
                let name = format!("{kind}.{n}");
                let (want_size, want_kind) = if kind == "step" { (vec![], Kind::Float) } else { (p.size(), p.kind()) };
                match map.remove(&name) {
                    Some(t) if t.size() != want_size || t.kind() != want_kind => {
                        let (k, s) = (t.kind(), t.size());
                        return refuse(format!("`{name}` is {k:?} {s:?}, where {want_kind:?} {want_size:?} belongs"));
                    }
                    Some(t) => tensors.push(t.to_device(p.device())),
                    None => {}
                }
            }
            let whole = Self::state_names(&self.groups[g]).len();
            if !tensors.is_empty() && tensors.len() != whole {
                return refuse(format!("the state of `{n}` is incomplete ({} of {whole} tensors)", tensors.len()));
            }
            restored.push(tensors);
        }
        if let Some(extra) = map.keys().min() {
            return refuse(format!("`{extra}` belongs to no optimised parameter"));
        }
        self.state = restored;
        Ok(())
    }
}
