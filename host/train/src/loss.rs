//! Masked cross-entropy over the trained (assistant) tokens, through the binding's fused
//! cross-entropy kernel (the (N, V) logits are never materialized on the CPU) or composed ops.

use mlx::loss::{CeOptions, CePath};
use mlx::Array;

use crate::data::Batch;
use crate::models::{Mode, Model};

/// A batch on the device: inputs and targets (B, L) int32, loss weights (B, L) f32.
pub struct DeviceBatch {
    pub inputs: Array,
    pub targets: Array,
    pub weights: Array,
    /// Trained target tokens.
    pub tokens: usize,
    /// Whether the loss may read the weights on the host to leave rows without a trained token
    /// out of the output projection (not in a compiled graph: its inputs have no values yet
    /// while it is traced).
    pub compact: bool,
}

impl DeviceBatch {
    pub fn new(b: &Batch) -> mlx::Result<Self> {
        let shape = [b.batch as i32, b.len as i32];
        Ok(DeviceBatch {
            inputs: Array::from_slice(&b.inputs, &shape)?,
            targets: Array::from_slice(&b.targets, &shape)?,
            weights: Array::from_slice(&b.weights, &shape)?,
            tokens: b.tokens,
            compact: true,
        })
    }
}

/// Sum of the NLL of the trained tokens (f32 scalar) with parameter values `p`.
pub fn nll_sum(model: &Model, p: &[Array], batch: &DeviceBatch, mode: Mode, path: CePath) -> mlx::Result<Array> {
    let h = model.hidden(p, &batch.inputs, mode)?;
    let w = model.head_weight(p)?;
    let opts = CeOptions { weights: Some(&batch.weights), path, compact: batch.compact, ..Default::default() };
    mlx::loss::cross_entropy(&h, &w, &batch.targets, opts)?.sum_all()
}
