//! Errors of the MLX binding.

/// Everything that can go wrong when using MLX through this crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// MLX or the bridge cannot be used on this machine; the message says how to fix it.
    #[error("MLX is unavailable: {0}")]
    Unavailable(String),
    /// MLX threw a C++ exception (bad shapes, dtypes, files, …); this is its message.
    #[error("MLX: {0}")]
    Exception(String),
    /// A Rust callback (the function given to value_and_grad, vjp or checkpoint) failed.
    #[error("{0}")]
    Callback(String),
    /// An argument was rejected on the Rust side before reaching MLX.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
