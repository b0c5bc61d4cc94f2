//! `samix._samix`, the compiled half of the Python package: Python classes over the samix library
//! (input policies, the pre-trained and the online Mixer) taking and returning torch tensors that
//! share memory and autograd with PyTorch (one libtorch, via pyo3-tch), and the command line run
//! in-process. Python-side wrappers, docstrings and stubs live in ../samix/.
mod errors;
mod mixer;
mod policies;
mod pretrained;

use pyo3::prelude::*;

/// The `samix` command line, compiled from the binary's own files: the Python `samix` command
/// is the same program, not a copy of it.
#[allow(dead_code)]
#[path = "../../src/bin/samix/main.rs"]
mod cli;

/// Runs the command line with `argv` (program name first) and returns its exit code: for the
/// `samix` console script and `python -m samix`, whole processes of their own (the command line
/// installs its Ctrl-C handling and allocator settings for the process). The GIL is released.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.allow_threads(|| cli::run_from_args(argv))
}

#[pymodule]
fn _samix(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // torch's libraries (the libtorch this module links) must be loaded before any tch call.
    m.py().import("torch")?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    policies::register(m)?;
    mixer::register(m)?;
    m.add_class::<pretrained::PretrainedMixer>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
