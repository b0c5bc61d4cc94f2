//! SAMix-P for Python: `PretrainedMixer`, a finished samix run's frozen encoder and Mixer used as
//! an input policy, built from the `samix_p` keys (JSON from ../samix/mixer.py).
use crate::errors::{check_device, check_images, lock, parse_table, to_py, PyResult};
use crate::policies::{mix_checked, PyMixed};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use samix::samix::{MixerArtifact, SamixP, SamixPConfig};
use samix::{SamixRng, Stream};
use std::sync::Mutex;
use tch::Device;

#[pyclass(frozen, module = "samix._samix")]
pub struct PretrainedMixer {
    device: Device,
    artifact: MixerArtifact,
    state: Mutex<(SamixP, SamixRng)>,
}

#[pymethods]
impl PretrainedMixer {
    /// `table`: the `samix_p` keys as JSON (`mixer` the folder, alpha, mask_adjust, lam_margin,
    /// reference_route).
    #[new]
    #[pyo3(signature = (table, seed, device = "cpu"))]
    fn new(table: &str, seed: u64, device: &str) -> PyResult<Self> {
        let config: SamixPConfig = parse_table("mix", table)?;
        let device = samix::device::parse_device(Some(device)).map_err(to_py)?;
        let policy = config.build(device).map_err(to_py)?;
        let Some(artifact) = policy.pretrained().artifact().cloned() else {
            return Err(PyValueError::new_err(format!("{}: no Mixer metadata", config.mixer.display())));
        };
        Ok(PretrainedMixer { device, artifact, state: Mutex::new((policy, samix::stream(seed, Stream::Mix, 0, 0))) })
    }

    fn mix(&self, x: PyTensor, y: PyTensor) -> PyResult<PyMixed> {
        check_images("x", &x)?;
        check_device("x", &x, self.device)?;
        let size = x.size();
        if size[2] != size[3] {
            return Err(PyValueError::new_err(format!(
                "x: the Mixer reads square images, got {}×{}",
                size[2], size[3]
            )));
        }
        let (policy, rng) = &mut *lock(&self.state);
        policy.pretrained().check_data(size[1], size[2]).map_err(to_py)?;
        if !matches!(x.kind(), tch::Kind::Float) {
            return Err(PyValueError::new_err(format!("x: the Mixer's encoder reads float32, got {:?}", x.kind())));
        }
        mix_checked(policy, &x, &y, rng)
    }

    /// The per-channel mean and std the Mixer's encoder was trained with.
    #[getter]
    fn normalization(&self) -> (Vec<f32>, Vec<f32>) {
        (self.artifact.mean.clone(), self.artifact.std.clone())
    }
    #[getter]
    fn image_size(&self) -> i64 {
        self.artifact.image_size
    }
    #[getter]
    fn in_channels(&self) -> i64 {
        self.artifact.in_channels
    }
}
