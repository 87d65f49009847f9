//! MLX's fused `fast::` ops.

use std::ffi::{c_int, CString};

use crate::array::{opt, out, Array};
use crate::error::Result;

/// RMS normalization over the last axis, times `weight` when given. On the CPU the bridge's
/// kernel ([`rms_norm_cpu`]; `BRAIN_MLX_COMPOSED_RMSNORM` asks for MLX's), elsewhere MLX's.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    static COMPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let composed = *COMPOSED.get_or_init(|| std::env::var_os("BRAIN_MLX_COMPOSED_RMSNORM").is_some());
    if !composed && !crate::device::default_device()?.is_gpu() {
        return rms_norm_cpu(x, weight, eps);
    }
    mlx_rms_norm(x, weight, eps)
}

/// MLX's own `fast::rms_norm` (MLX 0.32 has no CPU kernel for it: there, composed ops, and their
/// autodiff for the gradient).
pub fn mlx_rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    out(|b, o| unsafe { (b.rms_norm)(x.raw(), opt(weight), eps, o) })
}

/// RMSNorm as one CPU primitive each way (the bridge's kernel: one pass over the rows, AVX2,
/// threads for large inputs). Differentiable w.r.t. `x` and `weight`.
pub fn rms_norm_cpu(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    out(|b, o| unsafe { (b.rms_norm_cpu)(x.raw(), opt(weight), eps, o) })
}

/// Layer normalization over the last axis with optional affine `weight` and `bias`.
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Result<Array> {
    out(|b, o| unsafe { (b.layer_norm)(x.raw(), opt(weight), opt(bias), eps, o) })
}

/// Rotary position embedding of the first `dims` features of the last axis, positions along
/// the second-to-last axis starting at `offset`. `traditional = false` is the Llama/Qwen
/// (rotate-half) layout. `base` is the frequency base (Qwen2: 1e6). On the CPU the rotate-half
/// layout is the bridge's kernel ([`rope_cpu`]; `BRAIN_MLX_COMPOSED_ROPE` asks for MLX's).
pub fn rope(x: &Array, dims: i32, traditional: bool, base: f32, scale: f32, offset: i32) -> Result<Array> {
    if use_rope_cpu(traditional)? {
        return rope_cpu(x, dims, base, scale, offset, None);
    }
    mlx_rope(x, dims, traditional, base, scale, offset)
}

fn use_rope_cpu(traditional: bool) -> Result<bool> {
    static COMPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let composed = *COMPOSED.get_or_init(|| std::env::var_os("BRAIN_MLX_COMPOSED_ROPE").is_some());
    Ok(!traditional && !composed && !crate::device::default_device()?.is_gpu())
}

/// MLX's own `fast::rope` (MLX 0.32 has no CPU kernel for it: there, composed ops, and their
/// autodiff for the gradient).
pub fn mlx_rope(x: &Array, dims: i32, traditional: bool, base: f32, scale: f32, offset: i32) -> Result<Array> {
    out(|b, o| unsafe {
        (b.rope)(x.raw(), dims, traditional as c_int, 1, base, scale, offset, std::ptr::null_mut(), std::ptr::null_mut(), o)
    })
}

/// [`rope`] with the offset as an (int32 scalar) array, e.g. per-batch cache positions (MLX's).
pub fn rope_with_offset_array(x: &Array, dims: i32, traditional: bool, base: f32, scale: f32, offset: &Array) -> Result<Array> {
    out(|b, o| unsafe {
        (b.rope)(x.raw(), dims, traditional as c_int, 1, base, scale, 0, offset.raw(), std::ptr::null_mut(), o)
    })
}

/// [`rope`] with explicit periods (`dims / 2` of them; MLX calls them `freqs` and rotates by
/// position / period) instead of a base.
pub fn rope_with_freqs(x: &Array, dims: i32, traditional: bool, scale: f32, offset: i32, freqs: &Array) -> Result<Array> {
    if use_rope_cpu(traditional)? {
        return rope_cpu(x, dims, 0.0, scale, offset, Some(freqs));
    }
    mlx_rope_with_freqs(x, dims, traditional, scale, offset, freqs)
}

/// MLX's own [`rope_with_freqs`].
pub fn mlx_rope_with_freqs(x: &Array, dims: i32, traditional: bool, scale: f32, offset: i32, freqs: &Array) -> Result<Array> {
    out(|b, o| unsafe {
        (b.rope)(x.raw(), dims, traditional as c_int, 0, 0.0, scale, offset, std::ptr::null_mut(), freqs.raw(), o)
    })
}

/// Rotate-half RoPE as one CPU primitive each way (the bridge's kernel): periods `base^(2i/dims)`,
/// or `periods` when given, positions `(offset + row) * scale` along the second-to-last axis. It
/// reads a strided input (the usual (B, L, H, D) -> (B, H, L, D) transposed view) in place and
/// writes contiguous rows. Differentiable w.r.t. `x` (the rotation back by the same angles).
pub fn rope_cpu(x: &Array, dims: i32, base: f32, scale: f32, offset: i32, periods: Option<&Array>) -> Result<Array> {
    out(|b, o| unsafe { (b.rope_cpu)(x.raw(), dims, base, scale, offset, opt(periods), o) })
}

/// The attention mask of [`scaled_dot_product_attention`].
#[derive(Debug, Clone, Copy)]
pub enum SdpaMask<'a> {
    None,
    /// Causal (lower-triangular, aligned to the end when queries are fewer than keys).
    Causal,
    /// An additive float mask or a boolean mask (true = attend), broadcastable to
    /// (B, heads, Lq, Lk).
    Array(&'a Array),
}

/// `softmax(q k^T * scale + mask) v` over (B, heads, L, D) inputs; `k`/`v` may have fewer
/// heads than `q` (grouped-query attention). On the CPU, without an array mask, this is the
/// bridge's fused kernel ([`attention_cpu`]); `BRAIN_MLX_COMPOSED_ATTENTION` asks for MLX's own.
pub fn scaled_dot_product_attention(q: &Array, k: &Array, v: &Array, scale: f32, mask: SdpaMask<'_>) -> Result<Array> {
    static COMPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let composed = *COMPOSED.get_or_init(|| std::env::var_os("BRAIN_MLX_COMPOSED_ATTENTION").is_some());
    if !composed && q.ndim() == 4 && !crate::device::default_device()?.is_gpu() {
        match mask {
            SdpaMask::None => return attention_cpu(q, k, v, scale, false),
            SdpaMask::Causal => return attention_cpu(q, k, v, scale, true),
            SdpaMask::Array(_) => {}
        }
    }
    mlx_sdpa(q, k, v, scale, mask)
}

/// MLX's own `scaled_dot_product_attention` (on the CPU: composed from generic ops).
pub fn mlx_sdpa(q: &Array, k: &Array, v: &Array, scale: f32, mask: SdpaMask<'_>) -> Result<Array> {
    let (mode, arr) = match mask {
        SdpaMask::None => ("", None),
        SdpaMask::Causal => ("causal", None),
        SdpaMask::Array(a) => ("array", Some(a)),
    };
    let mode = CString::new(mode).unwrap();
    out(|b, o| unsafe { (b.sdpa)(q.raw(), k.raw(), v.raw(), scale, mode.as_ptr(), opt(arr), o) })
}

/// Grouped-query attention on the CPU as one primitive each way (the bridge's kernel): q (B, H,
/// L, D), k and v (B, KV, S, D) with H a multiple of KV, optionally causal (aligned to the end
/// when L < S). The matmuls go to BLAS once per KV head, the softmax is one vectorized pass, and
/// only each row's log-sum-exp is kept for the backward pass, which recomputes the
/// probabilities. MLX's composed CPU attention runs its exp as a scalar loop and keeps the whole
/// (B, H, L, S) probability tensor for autodiff. Differentiable w.r.t. q, k and v.
pub fn attention_cpu(q: &Array, k: &Array, v: &Array, scale: f32, causal: bool) -> Result<Array> {
    out(|b, o| unsafe { (b.attention_cpu)(q.raw(), k.raw(), v.raw(), scale, causal as c_int, o) })
}

/// SwiGLU's gate `silu(g) * u`: on the CPU the bridge's fused kernel (one pass each way, AVX2,
/// threads; MLX's composed ops take ~20% of a small model's LoRA step there, mostly a scalar
/// sigmoid), elsewhere MLX's ops. Differentiable w.r.t. both.
pub fn swiglu(g: &Array, u: &Array) -> Result<Array> {
    static COMPOSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let composed = *COMPOSED.get_or_init(|| std::env::var_os("BRAIN_MLX_COMPOSED_SWIGLU").is_some());
    if composed || crate::device::default_device()?.is_gpu() {
        return g.silu()?.mul(u);
    }
    out(|b, o| unsafe { (b.swiglu)(g.raw(), u.raw(), o) })
}
