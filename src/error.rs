//! The library's error type: every failure a user can cause (files, configs, arguments) ends up here
//! with the file or key named, so the CLI can print one clear line and exit non-zero.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The OS error is part of the message, not a `source`: a printer of error chains
    // (`anyhow`'s `{:#}`) would print it a second time.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// A dataset file exists but its content is not what the format promises.
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    /// A configuration value is missing, unknown or out of range.
    #[error("config key `{key}`: {msg}")]
    Config { key: String, msg: String },
    #[error("{path}: {msg}")]
    ConfigFile { path: PathBuf, msg: String },
    /// A run directory or checkpoint that cannot be used as asked.
    #[error("{path}: {msg}")]
    Run { path: PathBuf, msg: String },
    /// A value could not be written out (serialisation of a config, summary or state file).
    #[error("{path}: cannot serialise: {msg}")]
    Serialize { path: PathBuf, msg: String },
    /// A run stopped on request (a signal) after writing a checkpoint `--resume` continues from.
    #[error("{path}: {msg}")]
    Interrupted { path: PathBuf, msg: String },
    /// A picture (chart, grid) that could not be drawn.
    #[error("{path}: cannot draw: {msg}")]
    Picture { path: PathBuf, msg: String },
    #[error("invalid argument: {0}")]
    Argument(String),
    #[error("torch: {0}")]
    Torch(tch::TchError),
    /// A failure inside one of the libtorch calls samix makes itself (csrc/shim.cpp).
    #[error("libtorch: {0}")]
    Native(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

// By hand rather than `#[from]`, which would also make the torch error the `source` and print
// it twice in an error chain.
impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

impl Error {
    pub fn io(path: impl AsRef<Path>, error: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error }
    }
    pub fn data(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Data { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    pub fn config(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { key: key.into(), msg: msg.into() }
    }
    pub fn serialize(path: impl AsRef<Path>, msg: impl std::fmt::Display) -> Self {
        Error::Serialize { path: path.as_ref().to_path_buf(), msg: msg.to_string() }
    }
    pub fn picture(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Picture { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    pub fn run(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Run { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
}
