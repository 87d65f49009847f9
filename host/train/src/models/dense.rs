//! Quantized weights on the CPU. MLX's CPU backend multiplies quantized matrices with its own
//! scalar kernel, while dense f32 goes through OpenBLAS: measured here on SmolLM2-135M (Q4_1,
//! 4 × 91 tokens) a LoRA step took 57 s quantized against 7 s dense (bench/quantized_cpu.sh). So on
//! the CPU a quantized model whose dense f32 copy fits comfortably in memory is dequantized once
//! at load (LoRA then trains on the dense weights; the result is the same up to the quantization
//! that is already in the weights). On a GPU, or when the dense copy would not fit, weights stay
//! quantized and train as QLoRA.

use std::collections::BTreeMap;

use mlx::quantized::dequantize;
use mlx::{Array, Dtype};

use crate::config::ModelConfig;
use crate::error::Result;

/// Dense f32 copies up to this size are made on the CPU (a 1.5B model is ~6 GB).
const DENSE_BUDGET_BYTES: usize = 8 << 30;

/// Whether `load` should dequantize: a CPU device, quantized weights, and a dense copy within
/// budget (`BRAIN_KEEP_QUANTIZED=1` keeps them quantized anyway).
pub(super) fn should_dequantize(config: &ModelConfig, raw: &BTreeMap<String, Array>) -> Result<bool> {
    if std::env::var_os("BRAIN_KEEP_QUANTIZED").is_some_and(|v| v == "1") || mlx::device::default_device()?.is_gpu() {
        return Ok(false);
    }
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
            a.size() * 32 / bits
        } else {
            a.size()
        };
        dense_bytes += elements * 4;
    }
    Ok(quantized && dense_bytes <= DENSE_BUDGET_BYTES)
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
            let dense = dequantize(&w, &s, b.as_ref(), group, bits)?.as_type(dtype)?;
            mlx::eval([&dense])?;
            raw.insert(format!("{prefix}.weight"), dense);
        }
    }
    if !prefixes.is_empty() {
        tracing::info!("dequantized {} quantized matrices to {dtype:?} for the CPU (MLX's CPU quantized matmul is far slower than dense BLAS; BRAIN_KEEP_QUANTIZED=1 keeps them)", prefixes.len());
    }
    config.quantization = None;
    Ok(())
}
