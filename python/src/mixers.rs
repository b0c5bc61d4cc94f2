//! The Mixer for Python: `PretrainedMixer` (SAMix-P, a finished run's frozen Mixer used as a
//! policy) and `Mixer` (the online Mixer a PyTorch loop trains: parameters that torch.optim owns,
//! a forward on the caller's stage features, returning tensors autograd runs through), with its
//! losses `MaskLoss` and `MixerLoss`. Settings arrive as JSON tables with the config file's keys.
use crate::errors::{check_device, check_images, check_labels, lock, to_py, PyResult};
use crate::policies::{mix_checked, PyMixed};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use samix::samix::{mask_loss, MaskLossConfig, MixerShape, SamixP, SamixPConfig};
use samix::{MixedTargets, MixupLoss, SamixRng, Stream};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tch::nn::VarStore;
use tch::{Device, Tensor};

fn parse<T: serde::de::DeserializeOwned>(key: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| to_py(samix::Error::config(key, e.to_string())))
}

fn device(spec: &str) -> PyResult<Device> {
    samix::device::parse_device(Some(spec)).map_err(to_py)
}

/// SAMix-P: the frozen encoder and Mixer of a finished SAMix run, as an input policy.
#[pyclass(frozen, module = "samix._samix")]
pub struct PretrainedMixer {
    device: Device,
    state: Mutex<(SamixP, SamixRng)>,
}

#[pymethods]
impl PretrainedMixer {
    /// `table`: the `samix_p` keys as JSON (`mixer` the folder, alpha, mask_adjust, lam_margin,
    /// reference_route).
    #[new]
    #[pyo3(signature = (table, seed, device = "cpu"))]
    fn new(table: &str, seed: u64, device: &str) -> PyResult<Self> {
        let config: SamixPConfig = parse("mix", table)?;
        let device = self::device(device)?;
        let policy = config.build(device).map_err(to_py)?;
        Ok(PretrainedMixer { device, state: Mutex::new((policy, samix::stream(seed, Stream::Mix, 0, 0))) })
    }

    fn mix(&self, x: PyTensor, y: PyTensor) -> PyResult<PyMixed> {
        check_images("x", &x)?;
        check_device("x", &x, self.device)?;
        let (policy, rng) = &mut *lock(&self.state)?;
        let size = x.size();
        policy.pretrained().check_data(size[1], size[2]).map_err(to_py)?;
        if size[2] != size[3] {
            return Err(PyValueError::new_err(format!(
                "x: the Mixer reads square images, got {}×{}",
                size[2], size[3]
            )));
        }
        mix_checked(policy, &x, &y, rng)
    }

    /// The per-channel mean and std the Mixer's encoder was trained with (normalise with them),
    /// the image side and channel count it reads.
    #[getter]
    fn normalization(&self) -> PyResult<(Vec<f32>, Vec<f32>)> {
        let artifact = lock(&self.state)?.0.pretrained().artifact().cloned();
        Ok(artifact.map_or((vec![], vec![]), |a| (a.mean, a.std)))
    }
    #[getter]
    fn image_size(&self) -> PyResult<i64> {
        Ok(lock(&self.state)?.0.pretrained().artifact().map_or(0, |a| a.image_size))
    }
    #[getter]
    fn in_channels(&self) -> PyResult<i64> {
        Ok(lock(&self.state)?.0.pretrained().artifact().map_or(0, |a| a.in_channels))
    }
}

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
        let config: samix::MixerConfig = parse("mix.mixer", table)?;
        config.check().map_err(to_py)?;
        for (key, v) in [("in_channels", in_channels), ("scale", scale)] {
            if v < 1 {
                return Err(PyValueError::new_err(format!("{key}: must be at least 1, got {v}")));
            }
        }
        let vs = VarStore::new(self::device(device)?);
        let mixer = samix::Mixer::new(&vs.root(), &config, MixerShape { in_channels, scale });
        Ok(Mixer { state: Mutex::new(MixerState { vs, mixer, training: true }) })
    }

    /// Every variable by name: trainable parameters (`requires_grad`) and BatchNorm statistics.
    /// The tensors are the Mixer's own: an optimiser's in-place update is the Mixer's update.
    fn state_dict(&self) -> PyResult<BTreeMap<String, PyTensor>> {
        Ok(lock(&self.state)?.vs.variables().into_iter().map(|(k, v)| (k, PyTensor(v))).collect())
    }

    /// Copies `state` into the Mixer's variables; every name must match, with the same shape.
    fn load_state_dict(&self, state: BTreeMap<String, PyTensor>) -> PyResult<()> {
        let mine = lock(&self.state)?.vs.variables();
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
        tch::no_grad(|| {
            for (name, v) in &state {
                mine[name].shallow_clone().copy_(v);
            }
        });
        Ok(())
    }

    /// Train mode: BatchNorm on batch statistics (updating its running ones) and dropout on.
    #[getter]
    fn training(&self) -> PyResult<bool> {
        Ok(lock(&self.state)?.training)
    }
    #[setter]
    fn set_training(&self, on: bool) -> PyResult<()> {
        lock(&self.state)?.training = on;
        Ok(())
    }

    /// `s` = the paired image's weight per pixel, `N×1×H×W`, for stage features `f` (`N×C×h×w`),
    /// the pairing `perm` (N int64: sample n is mixed with `perm[n]`) and λ (0-dim, the first
    /// image's share). Differentiable with respect to the Mixer's parameters and `f`.
    fn mask(&self, f: PyTensor, perm: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        check_images("features", &f)?;
        let state = lock(&self.state)?;
        let (c, want) = (f.size()[1], state.mixer.shape().in_channels);
        if c != want {
            return Err(PyValueError::new_err(format!("features: {c} channels, the Mixer reads {want}")));
        }
        check_device("features", &f, state.vs.device())?;
        check_labels("perm", &perm, f.size()[0], f.device())?;
        check_lambda(&lam)?;
        Ok(PyTensor(state.mixer.mask(&f, &perm, &lam, state.training)))
    }
}

fn check_lambda(lam: &Tensor) -> PyResult<()> {
    if lam.dim() != 0 || !lam.is_floating_point() {
        let msg = format!("lam: expected one λ as a 0-dim float tensor, got {:?} of {:?}", lam.size(), lam.kind());
        return Err(PyValueError::new_err(msg));
    }
    Ok(())
}

/// The Mixer's mask loss (`[mix.mask_loss]`), already multiplied by its weight.
#[pyclass(module = "samix._samix", frozen)]
pub struct MaskLoss(MaskLossConfig);

#[pymethods]
impl MaskLoss {
    #[new]
    fn new(table: &str) -> PyResult<Self> {
        let config: MaskLossConfig = parse("mix.mask_loss", table)?;
        config.check().map_err(to_py)?;
        Ok(MaskLoss(config))
    }
    fn __call__(&self, s: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        check_images("s", &s)?;
        if s.size()[1] != 1 {
            return Err(PyValueError::new_err(format!("s: expected N×1×H×W masks, got {:?}", s.size())));
        }
        check_lambda(&lam)?;
        Ok(PyTensor(mask_loss(&s, &lam, &self.0)))
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
        Ok(MixerLoss(parse("mix.mixer_loss", table)?))
    }
    fn __call__(&self, logits: PyTensor, y_a: PyTensor, y_b: PyTensor, lam: PyTensor) -> PyResult<PyTensor> {
        let t = targets(&logits, y_a, y_b, lam)?;
        Ok(PyTensor(self.0.compute(&logits, &t)))
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
    Ok(PyTensor(samix::mixup_cross_entropy(&logits, &t, smoothing)))
}

fn targets(logits: &Tensor, y_a: PyTensor, y_b: PyTensor, lam: PyTensor) -> PyResult<MixedTargets> {
    if logits.dim() != 2 || !logits.is_floating_point() {
        return Err(PyValueError::new_err(format!(
            "logits: expected N×K floats, got {:?} of {:?}",
            logits.size(),
            logits.kind()
        )));
    }
    let (n, device) = (logits.size()[0], logits.device());
    check_labels("y_a", &y_a, n, device)?;
    check_labels("y_b", &y_b, n, device)?;
    check_device("lam", &lam, device)?;
    if lam.size() != [n] || !lam.is_floating_point() {
        return Err(PyValueError::new_err(format!(
            "lam: expected {n} floats (one per sample), got {:?} of {:?}",
            lam.size(),
            lam.kind()
        )));
    }
    Ok(MixedTargets { y_a: y_a.0, y_b: y_b.0, lam: lam.0 })
}

/// The backbone branch's mask post-processing (docs/ALGORITHM.md §3.3–§3.4): the area adjusted to
/// λ where `adjust` is 1, plain mixup where λ is within `lam_margin` of 0 or 1.
#[pyfunction]
#[pyo3(signature = (s, lam, adjust = None, lam_margin = 0.08))]
fn backbone_mask(s: PyTensor, lam: PyTensor, adjust: Option<PyTensor>, lam_margin: f64) -> PyResult<PyTensor> {
    check_images("s", &s)?;
    check_lambda(&lam)?;
    Ok(PyTensor(samix::samix::backbone_mask(s.0, &lam, adjust.as_deref(), lam_margin)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PretrainedMixer>()?;
    m.add_class::<Mixer>()?;
    m.add_class::<MaskLoss>()?;
    m.add_class::<MixerLoss>()?;
    m.add_function(wrap_pyfunction!(mixup_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(backbone_mask, m)?)?;
    Ok(())
}
