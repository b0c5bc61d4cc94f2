//! samix's errors as Python exceptions, with the command line's one-line messages: bad settings
//! and arguments are ValueError, missing files OSError, a stop signal KeyboardInterrupt, failures
//! inside libtorch RuntimeError. Tensors handed in from Python are checked first where that costs
//! no device sync (TypeError for the wrong kind of thing, ValueError for the wrong shape or
//! device); what only libtorch can see (an index out of range, a dtype a layer refuses) runs under
//! [`guarded`], which turns tch's panic into a RuntimeError carrying libtorch's message.
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;
use samix::Error;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tch::{Device, Kind, Tensor};

pub type PyResult<T> = Result<T, PyErr>;

/// The Python exception for a samix error.
pub fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Config { .. }
        | Error::ConfigFile { .. }
        | Error::Argument(_)
        | Error::Data { .. }
        | Error::Run { .. } => PyValueError::new_err(msg),
        Error::Io { ref error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Interrupted { .. } => PyKeyboardInterrupt::new_err(msg),
        Error::Torch(_) | Error::Native(_) | Error::Serialize { .. } | Error::Picture { .. } => {
            PyRuntimeError::new_err(msg)
        }
    }
}

/// A table with a config file's keys, as JSON from the Python wrappers, read by the config's own
/// serde type; a bad one is a ValueError naming the table (`key`).
pub fn parse_table<T: serde::de::DeserializeOwned>(key: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| {
        // serde_json appends the position in the one-line JSON, which says nothing to the caller.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        to_py(Error::config(key, msg))
    })
}

/// Runs libtorch work, turning tch's panic on a libtorch error into a RuntimeError with its
/// message (the panic's default report to stderr is silenced for the call).
pub fn guarded<T>(work: impl FnOnce() -> T) -> PyResult<T> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    std::panic::set_hook(report);
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a libtorch call failed");
        // tch's message holds libtorch's, then its C++ backtrace: keep the first line.
        PyRuntimeError::new_err(format!("torch: {}", msg.lines().next().unwrap_or(msg)))
    })
}

/// The state behind a Python object. Every call holds the GIL throughout, so the lock is never
/// contended; it is what lets an object made on one thread be used on another (libtorch tensors
/// are `Send` but not `Sync`). A call that failed midway leaves tensors that are still whole, so
/// a poisoned lock is taken over rather than locking the object (and a trained Mixer) away.
pub fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `name` must be an `N×C×H×W` floating-point batch.
pub fn check_images(name: &str, x: &Tensor) -> PyResult<()> {
    if !x.is_floating_point() {
        return Err(PyTypeError::new_err(format!("{name}: expected a floating-point tensor, got {:?}", x.kind())));
    }
    if x.dim() != 4 {
        return Err(PyValueError::new_err(format!("{name}: expected N×C×H×W, got shape {:?}", x.size())));
    }
    Ok(())
}

/// `name` must be `n` int64 indices (`what`: of classes, or of samples for a pairing) on `device`.
pub fn check_indices(name: &str, what: &str, y: &Tensor, n: i64, device: Device) -> PyResult<()> {
    if y.kind() != Kind::Int64 {
        return Err(PyTypeError::new_err(format!("{name}: expected int64 {what}, got {:?}", y.kind())));
    }
    if y.size() != [n] {
        return Err(PyValueError::new_err(format!(
            "{name}: expected shape [{n}] (one per sample), got {:?}",
            y.size()
        )));
    }
    check_device(name, y, device)
}

/// `name` must be `n` int64 class indices on `device`.
pub fn check_labels(name: &str, y: &Tensor, n: i64, device: Device) -> PyResult<()> {
    check_indices(name, "class indices", y, n, device)
}

/// `name` must live on `device` (the batch's).
pub fn check_device(name: &str, t: &Tensor, device: Device) -> PyResult<()> {
    if t.device() != device {
        let msg = format!("{name}: on {}, the batch is on {}", device_name(t.device()), device_name(device));
        return Err(PyValueError::new_err(msg));
    }
    Ok(())
}

/// One λ, a 0-dim float tensor on `device` or the CPU (a host scalar).
pub fn check_lambda(lam: &Tensor, device: Device) -> PyResult<()> {
    if lam.dim() != 0 || !lam.is_floating_point() {
        let msg = format!("lam: expected one λ as a 0-dim float tensor, got {:?} of {:?}", lam.size(), lam.kind());
        return Err(PyValueError::new_err(msg));
    }
    if lam.device() != Device::Cpu {
        check_device("lam", lam, device)?;
    }
    Ok(())
}

/// A device as torch writes it: "cpu", "cuda:0".
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}
