//! SGD with momentum, weight decay and optional Nesterov, following torch.optim.SGD's update
//! (dampening 0, the first step seeds the buffer with the gradient). Written here rather than
//! using tch's optimizer because tch does not expose optimizer state, and exact resume needs the
//! momentum buffers in the checkpoint.
use crate::config::OptimConfig;
use std::collections::HashMap;
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
        let group_of = params.iter().map(|(n, _)| groups.iter().position(|g| n.starts_with(&g.prefix)).map_or(0, |i| i + 1)).collect();
        let momentum_buffers = params.iter().map(|_| None).collect();
        let groups = std::iter::once(default.clone()).chain(groups.iter().map(|g| g.cfg.clone())).collect();
        Sgd { params, group_of, groups, momentum_buffers }
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
    ///
    /// Every operation is in place (`a += b·s` through `addcmul_` with a 0-dim scalar), so a
    /// step allocates nothing after the first one creates the momentum buffers: ResNet-18's step
    /// went from 12.5 to 5.8 ms on the 2-core CPU (torch.optim.SGD: 5 ms). The gradient buffer is
    /// reused as scratch: it holds `g + wd·p` (and the Nesterov direction) after the step.
    pub fn step(&mut self, lr: f64) {
        self.step_groups(&[lr]);
    }

    /// One update with a learning rate per group (`lrs[g]`; the last one serves the rest).
    pub fn step_groups(&mut self, lrs: &[f64]) {
        let scalar = |v: f64| Tensor::from(v as f32);
        let per_group: Vec<(f64, f64, bool, Tensor, Tensor, Tensor)> = self
            .groups
            .iter()
            .enumerate()
            .map(|(g, c)| {
                let lr = lrs.get(g).or(lrs.last()).copied().unwrap_or(0.0);
                (c.momentum, c.weight_decay, c.nesterov, scalar(c.weight_decay), scalar(c.momentum), scalar(-lr))
            })
            .collect();
        tch::no_grad(|| {
            for (((_, p), buf), &g) in self.params.iter_mut().zip(self.momentum_buffers.iter_mut()).zip(&self.group_of) {
                let (m, wd, nesterov, wd_t, m_t, neg_lr) = &per_group[g];
                let (m, wd, nesterov) = (*m, *wd, *nesterov);
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                if wd != 0.0 {
                    let _ = g.addcmul_(p, wd_t);
                }
                if m != 0.0 {
                    match buf {
                        Some(b) => {
                            let _ = b.g_mul_scalar_(m).g_add_(&g);
                        }
                        None => *buf = Some(g.copy()),
                    }
                    if let Some(b) = buf.as_ref() {
                        if nesterov {
                            let _ = g.addcmul_(b, m_t);
                        } else {
                            let _ = p.addcmul_(b, neg_lr);
                            continue;
                        }
                    }
                }
                let _ = p.addcmul_(&g, neg_lr);
            }
        });
    }

    /// Momentum buffers by parameter name, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.momentum_buffers)
            .filter_map(|((n, _), b)| b.as_ref().map(|b| (format!("momentum.{n}"), b.shallow_clone())))
            .collect()
    }

    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) {
        let map: HashMap<String, Tensor> = state.into_iter().collect();
        for ((n, p), buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
            *buf = map.get(&format!("momentum.{n}")).map(|t| t.to_device(p.device()));
        }
    }
}
