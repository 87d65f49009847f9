//! Affine quantization (mlx-community's 4/8-bit layout: packed uint32 weights, scales, biases).

use std::ffi::{c_int, CString};

use crate::array::{opt, out, Array};
use crate::error::Result;
use crate::ops::vec_out;

/// A quantized matrix: packed `weight` (uint32), per-group `scales` and `biases`.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub weight: Array,
    pub scales: Array,
    pub biases: Array,
    pub group_size: i32,
    pub bits: i32,
}

/// Quantizes `w` along its last axis in groups of `group_size` (32, 64, 128) with `bits`
/// (2, 3, 4, 5, 6, 8) per value.
pub fn quantize(w: &Array, group_size: i32, bits: i32) -> Result<Quantized> {
    let mode = CString::new("affine").unwrap();
    let mut parts = vec_out(|b, v| unsafe { (b.quantize)(w.raw(), group_size, bits, mode.as_ptr(), v) })?;
    if parts.len() != 3 {
        return Err(crate::Error::Exception(format!("quantize returned {} arrays", parts.len())));
    }
    let biases = parts.pop().unwrap();
    let scales = parts.pop().unwrap();
    let weight = parts.pop().unwrap();
    Ok(Quantized { weight, scales, biases, group_size, bits })
}

/// The float matrix a quantized one stands for.
pub fn dequantize(w: &Array, scales: &Array, biases: Option<&Array>, group_size: i32, bits: i32) -> Result<Array> {
    let mode = CString::new("affine").unwrap();
    out(|b, o| unsafe { (b.dequantize)(w.raw(), scales.raw(), opt(biases), group_size, bits, mode.as_ptr(), o) })
}

/// `x @ dequantize(w).T` (`transpose = true`, the linear-layer case) or `x @ dequantize(w)`,
/// without materializing the float matrix. Differentiable w.r.t. `x`.
#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul(x: &Array, w: &Array, scales: &Array, biases: Option<&Array>, transpose: bool, group_size: i32, bits: i32) -> Result<Array> {
    let mode = CString::new("affine").unwrap();
    out(|b, o| unsafe {
        (b.quantized_matmul)(x.raw(), w.raw(), scales.raw(), opt(biases), transpose as c_int, group_size, bits, mode.as_ptr(), o)
    })
}

/// The f32 matrix of packed `w` by the bridge's CPU kernel (bits 2, 4, 8; biases required), in
/// f32 whatever the scales' dtype, written once: MLX's CPU `dequantize` is a chain of elementwise
/// ops whose intermediates each take as much memory as the result. Not differentiable.
pub fn dequantize_cpu(w: &Array, scales: &Array, biases: &Array, group_size: i32, bits: i32) -> Result<Array> {
    out(|b, o| unsafe { (b.dequantize_cpu)(w.raw(), scales.raw(), biases.raw(), group_size, bits, o) })
}

/// [`quantized_matmul`] by the bridge's own CPU kernel (bits 2, 4, 8; biases required):
/// tiles of W dequantized into a small buffer and multiplied by BLAS for many rows of `x`,
/// straight from the packed words for a few (decoding). MLX's own CPU quantized matmul is a
/// scalar loop, ~75x slower than f32 BLAS at training shapes. Differentiable w.r.t. `x` only.
#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul_cpu(x: &Array, w: &Array, scales: &Array, biases: &Array, transpose: bool, group_size: i32, bits: i32) -> Result<Array> {
    out(|b, o| unsafe { (b.quantized_matmul_cpu)(x.raw(), w.raw(), scales.raw(), biases.raw(), transpose as c_int, group_size, bits, o) })
}

/// [`quantized_matmul_cpu`] with the dequantized tiles multiplied in bf16 (`x` rounded to bf16,
/// sums in f32) by the AVX-512 BF16 kernel of [`crate::bf16mm`], about twice sgemm's rate; a few
/// rows of `x` (decoding) take the same kernels as there. An error where
/// [`crate::bf16mm::is_available`] is false.
#[allow(clippy::too_many_arguments)]
pub fn quantized_matmul_cpu_bf16(x: &Array, w: &Array, scales: &Array, biases: &Array, transpose: bool, group_size: i32, bits: i32) -> Result<Array> {
    out(|b, o| unsafe { (b.quantized_matmul_cpu_bf16)(x.raw(), w.raw(), scales.raw(), biases.raw(), transpose as c_int, group_size, bits, o) })
}

/// The kernel the bridge's CPU quantized matmul takes for one row of `x` (a decoding step) at
/// `bits` and `group_size` on this CPU: "vnni-int8" (x as 8-bit integers per group, like
/// llama.cpp; `BRAIN_MLX_NO_VNNI=1` keeps x in f32), "vbmi", "avx2-bytes" or "general".
pub fn row_kernel(bits: i32, group_size: i32) -> Result<&'static str> {
    let b = crate::sys::bridge()?;
    // SAFETY: the bridge returns a pointer to a static, NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr((b.qmm_row_kernel)(bits, group_size)) };
    Ok(name.to_str().unwrap_or("general"))
}

impl Quantized {
    /// [`dequantize`] of this matrix.
    pub fn dequantize(&self) -> Result<Array> {
        dequantize(&self.weight, &self.scales, Some(&self.biases), self.group_size, self.bits)
    }

    /// `x @ W.T` with this matrix as W.
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        quantized_matmul(x, &self.weight, &self.scales, Some(&self.biases), true, self.group_size, self.bits)
    }
}
