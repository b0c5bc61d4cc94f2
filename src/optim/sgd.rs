//! SGD with momentum, weight decay and optional Nesterov, following torch.optim.SGD's update
//! (dampening 0, the first step seeds the buffer with the gradient), run by torch's fused
//! multi-tensor kernel. Written here rather than using tch's optimizer because tch does not
//! expose optimizer state, and exact resume needs the momentum buffers in the checkpoint.
//! In data-parallel training it first replaces each gradient by its mean over the ranks.
//! Touches only the parameters, their gradients and its own buffers.
use super::OptimConfig;
use crate::dist::ProcessGroup;
use crate::native;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;
use tch::{nn::VarStore, Tensor};

/// Parameters whose name starts with `prefix` use `cfg` (and their own learning rate).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub prefix: String,
    pub cfg: OptimConfig,
}

pub struct Sgd {
    params: Vec<(String, Tensor)>,
    /// Group of each parameter: 0 = the default group, i = `groups[i]`.
    group_of: Vec<usize>,
    groups: Vec<OptimConfig>,
    momentum_buffers: Vec<Option<Tensor>>,
    /// One 0-dim learning rate per group, on the parameters' device (f32: the kernel reads it
    /// at replay of a captured step).
    lr_tensors: Vec<Tensor>,
    /// The same rates as set, for f64 parameters (which get them unrounded).
    lr_values: Vec<f64>,
    /// Data-parallel training: gradients are averaged over this group (in buckets of at most
    /// this many bytes) before every update.
    sync: Option<(Arc<ProcessGroup>, usize)>,
}

impl Sgd {
    /// Optimises every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Self {
        Self::with_groups(vs, cfg, &[])
    }

    /// As [`Sgd::new`], with parameters matching a group's prefix in that group (first match).
    pub fn with_groups(vs: &VarStore, default: &OptimConfig, groups: &[ParamGroup]) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let group_of = params
            .iter()
            .map(|(n, _)| groups.iter().position(|g| n.starts_with(&g.prefix)).map_or(0, |i| i + 1))
            .collect();
        let momentum_buffers = params.iter().map(|_| None).collect();
        let groups: Vec<OptimConfig> =
            std::iter::once(default.clone()).chain(groups.iter().map(|g| g.cfg.clone())).collect();
        let lr_tensors = groups.iter().map(|c| Tensor::full([], c.lr, (tch::Kind::Float, vs.device()))).collect();
        let lr_values = groups.iter().map(|c| c.lr).collect();
        Sgd { params, group_of, groups, momentum_buffers, lr_tensors, lr_values, sync: None }
    }

    /// Averages gradients over `group` before every update (as PyTorch's DDP does during the
    /// backward pass), in flat buckets of at most `bucket_bytes`.
    pub fn average_gradients_over(&mut self, group: Arc<ProcessGroup>, bucket_bytes: usize) {
        self.sync = Some((group, bucket_bytes));
    }

    /// Creates every momentum buffer not made yet (zeros, which is what the first update would
    /// make), so that data-parallel ranks hold the same set of buffers to broadcast.
    pub fn materialize_buffers(&mut self) {
        for (((_, p), buf), &g) in self.params.iter().zip(self.momentum_buffers.iter_mut()).zip(&self.group_of) {
            if self.groups[g].momentum != 0.0 && buf.is_none() {
                *buf = Some(p.zeros_like());
            }
        }
    }

    /// Names of the optimised parameters of group `g` (0 = default).
    pub fn group_params(&self, g: usize) -> Vec<&str> {
        self.params.iter().zip(&self.group_of).filter(|(_, &gi)| gi == g).map(|((n, _), _)| n.as_str()).collect()
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
    /// from [`Sgd::apply`] so a captured CUDA graph of the step reads the current rates.
    pub fn set_learning_rates(&mut self, lrs: &[f64]) {
        for (g, (lr_t, value)) in self.lr_tensors.iter_mut().zip(self.lr_values.iter_mut()).enumerate() {
            let lr = lrs.get(g).or(lrs.last()).copied().unwrap_or(0.0);
            let _ = lr_t.fill_(lr);
            *value = lr;
        }
    }

    /// The update with the rates last set: per group, torch's fused multi-tensor SGD kernel
    /// (`torch.optim.SGD(fused=True)`) over the parameters that have a gradient — a handful of
    /// launches instead of several per parameter, which is what matters on a launch-bound GPU.
    /// Momentum buffers are created as zeros on the first update, which reproduces torch's
    /// first step (`v = g`).
    pub fn apply(&mut self) -> Result<()> {
        if let Some((group, bucket_bytes)) = &self.sync {
            // Parameter order is the same on every rank (sorted names), so the buckets match.
            let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
            group.average(&grads, *bucket_bytes)?;
        }
        for (g, cfg) in self.groups.iter().enumerate() {
            let mut params = Vec::new();
            let mut grads = Vec::new();
            let mut buffers = Vec::new();
            for (((_, p), buf), _) in
                self.params.iter().zip(self.momentum_buffers.iter_mut()).zip(&self.group_of).filter(|(_, &gi)| gi == g)
            {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                if cfg.momentum != 0.0 {
                    buffers.push(buf.get_or_insert_with(|| p.zeros_like()).shallow_clone());
                }
                params.push(p.shallow_clone());
                grads.push(grad);
            }
            let lr = match params.first() {
                Some(p) if p.kind() == tch::Kind::Double => Tensor::from(self.lr_values[g]).to_device(p.device()),
                _ => self.lr_tensors[g].shallow_clone(),
            };
            tch::no_grad(|| {
                native::fused_sgd(
                    &refs(&params),
                    &refs(&grads),
                    &refs(&buffers),
                    cfg.weight_decay,
                    cfg.momentum,
                    &lr,
                    cfg.nesterov,
                )
            })?;
        }
        Ok(())
    }

    /// Whether any group keeps momentum buffers (which a resume must then restore).
    pub fn uses_momentum(&self) -> bool {
        self.groups.iter().any(|g| g.momentum != 0.0)
    }

    /// Momentum buffers by parameter name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.momentum_buffers)
            .filter_map(|((n, _), b)| b.as_ref().map(|b| (format!("momentum.{n}"), b.shallow_clone())))
            .collect()
    }

    /// Restores momentum buffers saved by [`Sgd::state`]. Every buffer must belong to an
    /// optimised parameter and have its shape and kind (the fused kernel reads a buffer as the
    /// parameter's size); otherwise the state is refused, naming the buffer, and nothing changes.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let mut map: HashMap<String, Tensor> = state.into_iter().collect();
        let mut buffers = Vec::with_capacity(self.params.len());
        for (n, p) in &self.params {
            let name = format!("momentum.{n}");
            let buf = match map.remove(&name) {
                Some(t) if t.size() != p.size() || t.kind() != p.kind() => {
                    let msg = format!(
                        "`{name}` is {:?} {:?}, its parameter {:?} {:?}",
                        t.kind(),
                        t.size(),
                        p.kind(),
                        p.size()
                    );
                    return Err(Error::Argument(format!("optimizer state: {msg}")));
                }
                Some(t) => Some(t.to_device(p.device())),
                None => None,
            };
            buffers.push(buf);
        }
        if let Some(extra) = map.keys().min() {
            return Err(Error::Argument(format!("optimizer state: `{extra}` belongs to no optimised parameter")));
        }
        self.momentum_buffers = buffers;
        Ok(())
    }
}

fn refs(v: &[Tensor]) -> Vec<&Tensor> {
    v.iter().collect()
}
