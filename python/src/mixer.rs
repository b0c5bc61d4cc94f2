//! The online Mixer for Python: `Mixer` (parameters that torch.optim owns, a forward on the
//! caller's stage features, tensors autograd runs through) and its losses `MaskLoss` and
//! `MixerLoss`, with the mixup cross-entropy and SAMix's mask post-processing. Settings arrive
//! as JSON tables with the config file's keys (../samix/mixer.py).
use crate::errors::{check_device, check_images, check_indices, check_labels, check_lambda, guarded, lock};
use crate::errors::{parse_table, to_py, PyResult};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use samix::samix::{mask_loss, MaskLossConfig, MixerShape};
use samix::{MixedTargets, MixupLoss};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// The online Mixer: its own variables (parameters and BatchNorm statistics) on one device.
#[pyclass(frozen, module = "samix._samix")]
pub struct Mixer {
    state: Mutex<MixerState>,
}

struct MixerState {
    vs: VarStore,
    mixer: samix::Mixer,
    training: bool,
}

#[pymethods]
impl Mixer {
    /// `table`: `[mix.mixer]` keys as JSON; `in_channels`: the channels of the stage it reads;
    /// `scale`: image side ÷ that stage's side. Initialised from torch's global generator.
    #[new]
    #[pyo3(signature = (table, in_channels, scale, device = "cpu"))]
    fn new(table: &str, in_channels: i64, scale: i64, device: &str) -> PyResult<Self> {
        let config: samix::MixerConfig = parse_table("mix.mixer", table)?;
        config.check().map_err(to_py)?;
        for (key, v) in [("in_channels", in_channels), ("scale", scale)] {
            if v < 1 {
                return Err(PyValueError::new_err(format!("{key}: must be at least 1, got {v}")));
            }
        }
        let vs = VarStore::new(samix::device::parse_device(Some(device)).map_err(to_py)?);
        let mixer = samix::Mixer::new(&vs.root(), &config, MixerShape { in_channels, scale });
        Ok(Mixer { state: Mutex::new(MixerState { vs, mixer, training: true }) })
    }

    /// Every variable by name: trainable parameters (`requires_grad`) and BatchNorm statistics.
    /// The tensors are the Mixer's own: an optimiser's in-place update is the Mixer's update.
    fn state_dict(&self) -> BTreeMap<String, PyTensor> {
        lock(&self.state).vs.variables().into_iter().map(|(k, v)| (k, PyTensor(v))).collect()
    }

    /// Copies `state` into the Mixer's variables; every name must match, with the same shape.
    fn load_state_dict(&self, state: BTreeMap<String, PyTensor>) -> PyResult<()> {
        let mine = lock(&self.state).vs.variables();
        for (name, v) in &state {
            let Some(dst) = mine.get(name) else {
                return Err(PyKeyError::new_err(format!("{name}: not a variable of this Mixer")));
            };
            if dst.size() != v.size() {
                let msg = format!("{name}: shape {:?}, the Mixer's is {:?}", v.size(), dst.size());
                return Err(PyValueError::new_err(msg));
            }
        }
        if let Some(missing) = mine.keys().find(|k| !state.contains_key(*k)) {
            return Err(PyKeyError::new_err(format!("{missing}: missing from the state")));
        }
        guarded(|| {
            tch::no_grad(|| {
                for (name, v) in &state {
                    mine[name].shallow_clone().copy_(v);
                }
            })
        })
    }

    /// Train mode: BatchNorm on batch statistics (updating its running ones) and dropout on.
    #[getter]
    fn training(&self) -> bool {
        lock(&self.state).training
    }
    #[setter]
    fn set_training(&self, on: bool) {
        lock(&self.state).training = on;
    }

    /// `s` = the paired image's weight per pixel, `N×1×H×W`, for stage features `f` (`N×C×h×w`,
    /// float32 like the Mixer's weights), the pairing `perm` (N int64: sample n is mixed with
    /// `perm[n]`) and λ (0-dim, the first image's share). Differentiable with respect to the
    /// Mixer's parameters and `f`.
    fn mask(&self, f: PyTensor, perm: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        check_images("features", &f)?;
        let state = lock(&self.state);
        let (c, want) = (f.size()[1], state.mixer.shape().in_channels);
        if c != want {
            return Err(PyValueError::new_err(format!("features: {c} channels, the Mixer reads {want}")));
        }
        if f.kind() != Kind::Float {
            return Err(PyTypeError::new_err(format!(
                "features: expected float32 (the Mixer's kind), got {:?}",
                f.kind()
            )));
        }
        check_device("features", &f, state.vs.device())?;
        check_indices("perm", "sample indices", &perm, f.size()[0], f.device())?;
        check_lambda(&lam, f.device())?;
        guarded(|| PyTensor(state.mixer.mask(&f, &perm, &lam, state.training)))
    }
}

/// The Mixer's mask loss (`[mix.mask_loss]`), already multiplied by its weight.
#[pyclass(module = "samix._samix", frozen)]
pub struct MaskLoss(MaskLossConfig);

#[pymethods]
impl MaskLoss {
    #[new]
    fn new(table: &str) -> PyResult<Self> {
        let config: MaskLossConfig = parse_table("mix.mask_loss", table)?;
        config.check().map_err(to_py)?;
        Ok(MaskLoss(config))
    }
    fn __call__(&self, s: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        check_images("s", &s)?;
        if s.size()[1] != 1 {
            return Err(PyValueError::new_err(format!("s: expected N×1×H×W masks, got {:?}", s.size())));
        }
        check_lambda(&lam, s.device())?;
        guarded(|| PyTensor(mask_loss(&s, &lam, &self.0)))
    }
}

/// The Mixer's classification loss on the critic's logits of the Mixer-branch images
/// (`[mix.mixer_loss]`: `pair_local_global` for SAMix, `soft_ce` for AutoMix, ...).
#[pyclass(module = "samix._samix", frozen)]
pub struct MixerLoss(MixupLoss);

#[pymethods]
impl MixerLoss {
    #[new]
    fn new(table: &str) -> PyResult<Self> {
        let loss: MixupLoss = parse_table("mix.mixer_loss", table)?;
        if loss.eta().is_some_and(|eta| !(eta.is_finite() && eta >= 0.0)) {
            return Err(to_py(samix::Error::config("mix.mixer_loss.eta", "must be a number >= 0")));
        }
        Ok(MixerLoss(loss))
    }
    fn __call__(&self, logits: PyTensor, y_a: PyTensor, y_b: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        let t = targets(&logits, y_a, y_b, lam)?;
        guarded(|| PyTensor(self.0.compute(&logits, &t)))
    }
}

/// `mean_n [λ_n·CE(z_n, y_a[n]) + (1−λ_n)·CE(z_n, y_b[n])]`, with label smoothing.
#[pyfunction]
#[pyo3(signature = (logits, y_a, y_b, lam, smoothing = 0.0))]
fn mixup_cross_entropy(
    logits: PyTensor,
    y_a: PyTensor,
    y_b: PyTensor,
    lam: PyTensor,
    smoothing: f64,
) -> PyResult<PyTensor> {
    if !(0.0..1.0).contains(&smoothing) {
        return Err(PyValueError::new_err(format!("smoothing: must be in [0, 1), got {smoothing}")));
    }
    let t = targets(&logits, y_a, y_b, lam)?;
    guarded(|| PyTensor(samix::mixup_cross_entropy(&logits, &t, smoothing)))
}

fn targets(logits: &Tensor, y_a: PyTensor, y_b: PyTensor, lam: PyTensor) -> PyResult<MixedTargets> {
    if logits.dim() != 2 || !logits.is_floating_point() {
        let msg = format!("logits: expected N×K floats, got {:?} of {:?}", logits.size(), logits.kind());
        return Err(PyValueError::new_err(msg));
    }
    let (n, device) = (logits.size()[0], logits.device());
    check_labels("y_a", &y_a, n, device)?;
    check_labels("y_b", &y_b, n, device)?;
    check_device("lam", &lam, device)?;
    if lam.size() != [n] || !lam.is_floating_point() {
        let msg = format!("lam: expected {n} floats (one per sample), got {:?} of {:?}", lam.size(), lam.kind());
        return Err(PyValueError::new_err(msg));
    }
    Ok(MixedTargets { y_a: y_a.0, y_b: y_b.0, lam: lam.0 })
}

/// The backbone branch's mask post-processing (docs/ALGORITHM.md §3.3–§3.4): the area adjusted to
/// λ where `adjust` (N×1×1×1, 1 = adjust) is 1, plain mixup where λ is within `lam_margin` of 0
/// or 1.
#[pyfunction]
#[pyo3(signature = (s, lam, adjust = None, lam_margin = 0.08))]
fn backbone_mask(s: PyTensor, lam: PyTensor, adjust: Option<PyTensor>, lam_margin: f64) -> PyResult<PyTensor> {
    check_images("s", &s)?;
    check_lambda(&lam, s.device())?;
    samix::samix::config::check_lam_margin(lam_margin).map_err(to_py)?;
    if let Some(a) = &adjust {
        let n = s.size()[0];
        if a.size() != [n, 1, 1, 1] {
            return Err(PyValueError::new_err(format!("adjust: expected shape [{n}, 1, 1, 1], got {:?}", a.size())));
        }
        check_device("adjust", a, s.device())?;
    }
    guarded(|| PyTensor(samix::samix::backbone_mask(s.0, &lam, adjust.as_deref(), lam_margin)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Mixer>()?;
    m.add_class::<MaskLoss>()?;
    m.add_class::<MixerLoss>()?;
    m.add_function(wrap_pyfunction!(mixup_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(backbone_mask, m)?)?;
    Ok(())
}
