//! Quantized weights on the CPU. MLX's CPU backend multiplies quantized matrices with a scalar
//! loop (~2 GFLOP/s here, against ~150-200 for f32 OpenBLAS), so 2/4/8-bit layers go through the
//! bridge's own kernel instead (`mlx::quantized::quantized_matmul_cpu`: dequantized tiles + BLAS
//! for many rows, straight from the packed words when decoding), which trains at the speed of the
//! dense model and decodes faster, in a quarter (8-bit) to an eighth (4-bit) of the memory. Only
//! widths that kernel lacks (3, 5, 6 bits) are dequantized once at load, when the dense f32 copy
//! fits. `BRAIN_DEQUANTIZE=1` dequantizes every quantized model that fits (f32 everywhere);
//! `BRAIN_KEEP_QUANTIZED=1` keeps every width packed (MLX's kernel for 3/5/6 bits). On a GPU
//! weights stay quantized (QLoRA).

use std::collections::BTreeMap;

use mlx::quantized::dequantize;
use mlx::{Array, Dtype};

use crate::config::ModelConfig;
use crate::error::Result;

/// Dense f32 copies up to this size are made on the CPU (a 1.5B model is ~6 GB).
const DENSE_BUDGET_BYTES: usize = 8 << 30;

/// Whether `load` should dequantize: a CPU device, quantized weights of a width the bridge's
/// kernel lacks (or `BRAIN_DEQUANTIZE=1`), and a dense copy within budget.
pub(super) fn should_dequantize(config: &ModelConfig, raw: &BTreeMap<String, Array>) -> Result<bool> {
    let env = |k: &str| std::env::var_os(k).is_some_and(|v| v == "1");
    if env("BRAIN_KEEP_QUANTIZED") || mlx::device::default_device()?.is_gpu() {
        return Ok(false);
    }
    let mut needs_mlx_kernel = env("BRAIN_DEQUANTIZE");
    let mut quantized = false;
    let mut dense_bytes = 0usize;
    for (name, a) in raw {
        if name.ends_with(".scales") || name.ends_with(".biases") && raw.contains_key(&name.replace(".biases", ".scales")) {
            continue;
        }
        let prefix = name.trim_end_matches(".weight");
        let elements = if a.dtype() == Dtype::Uint32 && raw.contains_key(&format!("{prefix}.scales")) {
            quantized = true;
            let bits = config.quantization.as_ref().map_or(4, |q| q.for_layer(prefix).1) as usize;
            needs_mlx_kernel |= !matches!(bits, 2 | 4 | 8);
            a.size() * 32 / bits
        } else {
            a.size()
        };
        dense_bytes += elements * 4;
    }
    Ok(quantized && needs_mlx_kernel && dense_bytes <= DENSE_BUDGET_BYTES)
}

/// Replace every quantized triple (`X.weight`, `X.scales`, `X.biases`) by the dense `X.weight` in
/// `dtype`, and drop the config's quantization.
pub(super) fn dequantize_all(config: &mut ModelConfig, raw: &mut BTreeMap<String, Array>, dtype: Dtype) -> Result<()> {
    let prefixes: Vec<String> = raw.keys().filter_map(|k| k.strip_suffix(".scales").map(String::from)).collect();
    for prefix in &prefixes {
        let (group, bits) = config.quantization.as_ref().map_or((32, 4), |q| q.for_layer(prefix));
        let w = raw.remove(&format!("{prefix}.weight"));
        let s = raw.remove(&format!("{prefix}.scales"));
        let b = raw.remove(&format!("{prefix}.biases"));
        if let (Some(w), Some(s)) = (w, s) {
            let dense = dequantize_f32(&w, &s, b.as_ref(), group, bits)?.as_type(dtype)?;
            mlx::eval([&dense])?;
            raw.insert(format!("{prefix}.weight"), dense);
        }
    }
    if !prefixes.is_empty() {
        tracing::info!("dequantized {} quantized matrices to {dtype:?} for the CPU (the bridge's quantized kernel takes 2, 4 or 8 bits; MLX's own CPU kernel is far slower than dense BLAS; BRAIN_KEEP_QUANTIZED=1 keeps them)", prefixes.len());
    }
    config.quantization = None;
    Ok(())
}

/// The f32 matrix of a packed one, computed in f32 whatever the scales' precision (as the packed
/// kernel and llama.cpp compute). On the CPU for 2/4/8 bits the bridge writes it in one pass; MLX's
/// `dequantize` there holds intermediates as large as the result (~1 GB more at the peak for a
/// 151,936-row output projection).
pub(super) fn dequantize_f32(w: &Array, scales: &Array, biases: Option<&Array>, group: i32, bits: i32) -> mlx::Result<Array> {
    if let (Some(b), true) = (biases, matches!(bits, 2 | 4 | 8)) {
        if !mlx::device::default_device()?.is_gpu() {
            return mlx::quantized::dequantize_cpu(w, scales, b, group, bits);
        }
    }
    let f32 = |a: &Array| a.as_type(Dtype::Float32);
    let b = biases.map(f32).transpose()?;
    dequantize(w, &f32(scales)?, b.as_ref(), group, bits)
}
