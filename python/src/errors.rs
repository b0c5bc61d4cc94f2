//! samix's errors as Python exceptions, with the command line's one-line messages: bad settings
//! and arguments are ValueError, missing files OSError, a stop signal KeyboardInterrupt, failures
//! inside libtorch RuntimeError; and the checks on tensors handed in from Python (TypeError for
//! the wrong kind of thing, ValueError for the wrong shape), made before libtorch sees them so a
//! mistake is an exception rather than a panic.
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;
use samix::Error;
use std::sync::{Mutex, MutexGuard};
use tch::{Kind, Tensor};

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

pub type PyResult<T> = Result<T, PyErr>;

/// The state behind a Python object. Every call holds the GIL throughout, so the lock is never
/// contended; it is what lets an object made on one thread be used on another (libtorch tensors
/// are `Send` but not `Sync`). Poisoned only if an earlier call panicked.
pub fn lock<T>(state: &Mutex<T>) -> PyResult<MutexGuard<'_, T>> {
    state
        .lock()
        .map_err(|_| PyRuntimeError::new_err("an earlier call on this object failed inside samix; make a new one"))
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

/// `name` must be `n` int64 class indices on `device`.
pub fn check_labels(name: &str, y: &Tensor, n: i64, device: tch::Device) -> PyResult<()> {
    if y.kind() != Kind::Int64 {
        return Err(PyTypeError::new_err(format!("{name}: expected int64 class indices, got {:?}", y.kind())));
    }
    if y.size() != [n] {
        return Err(PyValueError::new_err(format!(
            "{name}: expected shape [{n}] (one label per image), got {:?}",
            y.size()
        )));
    }
    check_device(name, y, device)
}

/// `name` must live on `device` (the batch's).
pub fn check_device(name: &str, t: &Tensor, device: tch::Device) -> PyResult<()> {
    if t.device() != device {
        return Err(PyValueError::new_err(format!("{name}: on {:?}, the batch is on {device:?}", t.device())));
    }
    Ok(())
}
