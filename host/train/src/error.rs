//! The crate's error type. Every variant says what was wrong and where.

use std::path::PathBuf;

/// Errors of the training core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file has a bad line.
    #[error("{file}:{line}: {msg}")]
    Data { file: PathBuf, line: usize, msg: String },
    /// A model, adapter or tokenizer directory is not usable.
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
    /// Bad arguments (the message says which and what to do).
    #[error("{0}")]
    Args(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// MLX failed (or is not installed; the message says how to fix it).
    #[error(transparent)]
    Mlx(#[from] mlx::Error),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error("loss is {loss} at step {step}; stopped. The last good checkpoint is {last_good}")]
    NonFinite { step: usize, loss: f32, last_good: String },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

pub(crate) fn model_err(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Error {
    Error::Model { path: path.into(), msg: msg.to_string() }
}
