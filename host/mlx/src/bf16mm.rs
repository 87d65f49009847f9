//! Matmul with bfloat16 products on the CPU: a bf16 weight times f32 activations rounded to
//! bf16, summed in f32, by the bridge's AVX-512 BF16 kernel (`vdpbf16ps`, twice sgemm's multiply
//! rate on CPUs that have it). MLX 0.32's own CPU bf16 matmul is a scalar loop (~4 GFLOP/s), which
//! is why models otherwise train in f32 on the CPU.

use std::ffi::c_int;

use crate::array::{out, Array};
use crate::error::Result;
use crate::sys;

/// Whether this CPU has the kernel (AVX-512 BF16) and `BRAIN_MLX_NO_BF16_GEMM` is not `1`.
pub fn is_available() -> Result<bool> {
    Ok(unsafe { (sys::bridge()?.has_bf16_gemm)() } == 1)
}

/// `x @ w^T` for `w` (N, K) when `transpose`, else `x @ w` for `w` (K, N); `w` bfloat16, `x` any
/// float (taken as f32, rounded to bf16 in the products), the result f32. Differentiable w.r.t.
/// `x` (by the same kernel) and `w` (by MLX's f32 matmul). An error where [`is_available`] is false.
pub fn matmul_cpu(x: &Array, w: &Array, transpose: bool) -> Result<Array> {
    out(|b, o| unsafe { (b.bf16_matmul_cpu)(x.raw(), w.raw(), transpose as c_int, o) })
}
