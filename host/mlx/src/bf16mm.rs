//! Matmul with bfloat16 products on the CPU: a bf16 weight times f32 activations rounded to
//! bf16, summed in f32, by the bridge's AVX-512 BF16 kernel (`vdpbf16ps`, twice sgemm's multiply
//! rate on CPUs that have it). MLX 0.32's own CPU bf16 matmul is a scalar loop (~4 GFLOP/s), which
//! is why models otherwise train in f32 on the CPU.

use std::ffi::c_int;

use crate::array::{out, Array};
use crate::ops::vec_out;
use crate::error::Result;
use crate::sys;

/// Whether this CPU has the kernel (AVX-512 BF16) and `BRAIN_MLX_NO_BF16_GEMM` is not `1`.
pub fn is_available() -> Result<bool> {
    Ok(unsafe { (sys::bridge()?.has_bf16_gemm)() } == 1)
}

/// Whether the kernel's tiled products (training, prompt processing) outrun OpenBLAS's f32 sgemm
/// on this CPU. On AMD's Zen 4 and 5, whose 512-bit multiply-adds run as two 256-bit halves,
/// `vdpbf16ps` doubles the multiply rate (about 2× sgemm measured). Intel's Sapphire Rapids and
/// later have two full 512-bit FMA ports, so sgemm already matches the bf16 dot product and the
/// kernel, which also rounds x and packs W, is 1.8–2.6× slower (BENCHMARKS.md). One row at a time
/// (decoding) the products are memory-bound, and reading 2 bytes per weight wins on both.
pub fn tiles_outrun_f32() -> Result<bool> {
    Ok(is_available()? && cpu_is_amd())
}

#[cfg(target_arch = "x86_64")]
fn cpu_is_amd() -> bool {
    // Leaf 0: the vendor string in ebx, edx, ecx.
    let r = std::arch::x86_64::__cpuid(0);
    let vendor: Vec<u8> = [r.ebx, r.edx, r.ecx].iter().flat_map(|v| v.to_le_bytes()).collect();
    vendor == b"AuthenticAMD"
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_is_amd() -> bool {
    false
}

/// `x @ w^T` for `w` (N, K) when `transpose`, else `x @ w` for `w` (K, N); `w` bfloat16, `x` any
/// float (taken as f32, rounded to bf16 in the products), the result f32. Differentiable w.r.t.
/// `x` (by the same kernel) and `w` (by MLX's f32 matmul). An error where [`is_available`] is false.
pub fn matmul_cpu(x: &Array, w: &Array, transpose: bool) -> Result<Array> {
    out(|b, o| unsafe { (b.bf16_matmul_cpu)(x.raw(), w.raw(), transpose as c_int, o) })
}

/// `x @ w^T` for each bfloat16 `w` (N_i, K) of `ws`, as one op: decoding's q, k and v (or gate and
/// up) share x, and one op hands the workers the rows of all of them at once instead of one
/// product after another. The results equal [`matmul_cpu`]'s bit for bit.
pub fn matmul_group_cpu(x: &Array, ws: &[&Array]) -> Result<Vec<Array>> {
    let raws: Vec<_> = ws.iter().map(|w| w.raw()).collect();
    vec_out(|b, v| unsafe { (b.bf16_matmul_group_cpu)(x.raw(), raws.as_ptr(), raws.len() as c_int, v) })
}
