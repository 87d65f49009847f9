//! Safe Rust binding of MLX through a thin C++ bridge (src/bridge.cpp) loaded at run time.
//!
//! - [`Array`]: RAII handle (Clone = handle copy), lazily evaluated; ops are `Result`-returning
//!   methods (`x.matmul(&w)?`, `x.sum(&[-1], true)?`) plus free functions in [`ops`]
//!   re-exported here; `+ - * /` on arrays panic only on shape errors.
//! - [`fast`] (rms_norm, layer_norm, rope, scaled_dot_product_attention), [`quantized`],
//!   [`random`], [`transforms`] (eval, value_and_grad, vjp, checkpoint), [`io`] (safetensors, GGUF),
//!   [`memory`], [`device`], [`loss`] (fused cross-entropy).
//! - Nothing touches MLX until first use; then the bridge is loaded (OpenBLAS preloaded on Linux).
//!   If MLX is missing or broken every call returns [`Error::Unavailable`] saying how to fix it.
//! - C++ exceptions never cross into Rust: MLX's messages come back as [`Error::Exception`].

mod array;
pub mod bf16mm;
pub mod device;
pub mod distributed;
mod error;
pub mod fast;
pub mod heap;
pub mod io;
pub mod loss;
pub mod memory;
pub mod ops;
pub mod optimizers;
pub mod quantized;
pub mod random;
mod sys;
pub mod transforms;

pub use array::{Array, ArrayElement, Dtype, Operand};
pub use device::{Device, Stream};
pub use error::{Error, Result};
pub use ops::{addmm, arange, concatenate, full, ones, stack, tri, where_, zeros};
pub use sys::BridgeInfo;
pub use transforms::{async_eval, checkpoint, eval, export_graph, value_and_grad, vjp, Compiled, GraphFormat};

/// The MLX version this crate is built and pinned against.
pub const VERSION: &str = env!("BRAIN_MLX_VERSION");

/// Loads MLX now (it otherwise loads on first use) and reports where and what it is.
pub fn init() -> Result<BridgeInfo> {
    sys::info()
}

/// The MLX version of the loaded library, at run time.
pub fn bridge_version() -> Result<String> {
    Ok(sys::info()?.mlx_version)
}

pub use half::{bf16, f16};
