//! Every input policy of samix as one Python class, `Policy`, built from its `[mix]` table (the
//! keys a config file would give, as JSON from the Python wrappers in ../samix/policies.py) and
//! a seed: the same `MixConfig` parsing and range checks as a run, so a bad value gets the
//! command line's message. Each call draws from the policy's own seeded stream.
use crate::errors::{check_images, check_labels, device_name, guarded, lock, parse_table, to_py, PyResult};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use samix::{MixConfig, MixPolicy, MixedBatch, SamixRng, Stream};
use std::sync::Mutex;
use tch::Device;

/// One mixed batch as Python receives it: images, y_a, y_b, λ per sample, the first image's
/// per-pixel weight (None for global blends) and the pairing (None when nothing was mixed).
pub type PyMixed = (PyTensor, PyTensor, PyTensor, PyTensor, Option<PyTensor>, Option<PyTensor>);

fn to_python(m: MixedBatch) -> PyMixed {
    (
        PyTensor(m.images),
        PyTensor(m.targets.y_a),
        PyTensor(m.targets.y_b),
        PyTensor(m.targets.lam),
        m.first_weight.map(PyTensor),
        m.pairing.map(PyTensor),
    )
}

/// Checks a batch from Python and mixes it with `policy`.
pub fn mix_checked(policy: &dyn MixPolicy, x: &PyTensor, y: &PyTensor, rng: &mut SamixRng) -> PyResult<PyMixed> {
    check_images("x", x)?;
    check_labels("y", y, x.size()[0], x.device())?;
    if x.size()[0] < 2 {
        return Err(PyValueError::new_err(format!("x: a batch of {} image(s) has nothing to mix with", x.size()[0])));
    }
    guarded(|| to_python(policy.mix(x, y, rng)))
}

/// A policy and its random stream (calls from several threads take turns).
#[pyclass(frozen, module = "samix._samix")]
pub struct Policy {
    name: &'static str,
    /// Where a policy that consults a network keeps it (the batch must be there too).
    network_device: Option<Device>,
    state: Mutex<(samix::Policy, SamixRng)>,
}

#[pymethods]
impl Policy {
    /// `table`: the `[mix]` table as JSON, `policy` key included; `seed`: the draws' stream;
    /// `device`: where a policy that consults a network keeps it ("cpu", "cuda", "cuda:N").
    #[new]
    #[pyo3(signature = (table, seed, device = "cpu"))]
    fn new(table: &str, seed: u64, device: &str) -> PyResult<Self> {
        let config: MixConfig = parse_table("mix", table)?;
        let elsewhere = match config {
            MixConfig::Samix(_) | MixConfig::Automix(_) => {
                Some("trains a Mixer with the model; use samix.Mixer in your own loop (README, \"From PyTorch\")")
            }
            MixConfig::SamixP(_) => Some("use samix.PretrainedMixer.load, which checks the batch against the Mixer"),
            _ => None,
        };
        if let Some(msg) = elsewhere {
            return Err(to_py(samix::Error::config("mix.policy", msg)));
        }
        config.check(0).map_err(to_py)?;
        let device = samix::device::parse_device(Some(device)).map_err(to_py)?;
        let network_device = matches!(config, MixConfig::Attentivemix(_)).then_some(device);
        let policy = samix::train::input_policy(&config, device).map_err(to_py)?;
        let state = Mutex::new((policy, samix::stream(seed, Stream::Mix, 0, 0)));
        Ok(Policy { name: config.name(), network_device, state })
    }

    /// Mixes one batch: `x` N×C×H×W floats, `y` N int64 labels, both on one device.
    fn mix(&self, x: PyTensor, y: PyTensor) -> PyResult<PyMixed> {
        if let Some(device) = self.network_device.filter(|d| *d != x.device()) {
            let msg = format!("x: on {}, the policy's network is on {}", device_name(x.device()), device_name(device));
            return Err(PyValueError::new_err(msg));
        }
        let (policy, rng) = &mut *lock(&self.state);
        mix_checked(policy, &x, &y, rng)
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.name
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()
}
