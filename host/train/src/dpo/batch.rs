//! Batches of pairs on the device and the DPO forward pass: policy log-probs of both responses,
//! the preference loss against the cached reference, and the per-pair statistics the metrics
//! are made of.

use mlx::loss::{CeOptions, CePath};
use mlx::Array;

use crate::error::Result;
use crate::loss::DeviceBatch;
use crate::models::{Mode, Model};

use super::loss::{dpo_loss, DpoLoss};
use super::pairs::{collate_pairs, Pair};
use super::reference::RefLogps;

/// A batch of pairs on the device with its reference log-probs.
pub struct PairBatch {
    /// Rows 0..B chosen, B..2B rejected.
    pub batch: DeviceBatch,
    pub pairs: usize,
    pub ref_chosen: Array,
    pub ref_rejected: Array,
    /// Response tokens per row (2B,), f32 (for length-normalized losses).
    pub lengths: Array,
    pub chosen_tokens: usize,
    /// max(chosen_tokens, 1) as a 0-d f32 array, the SFT term's divisor (an array so a compiled
    /// update takes it as an input).
    pub chosen_norm: Array,
    /// This batch's pairs ÷ the pairs of the global batch it is this rank's part of (1 in a
    /// world of one): its mean loss is weighted by it.
    pub share: f32,
}

impl PairBatch {
    /// Pairs `idx` of `set` (and their reference log-probs, indexed alike).
    /// Rows padded to a multiple of `pad_multiple` tokens (see
    /// [`crate::COMPILED_LENGTH_MULTIPLE`]; 1: to the longest).
    pub fn new(set: &[Pair], idx: &[usize], reference: &RefLogps, pad: u32, pad_multiple: usize) -> Result<Self> {
        let ps: Vec<&Pair> = idx.iter().map(|&i| &set[i]).collect();
        let mut b = collate_pairs(&ps, pad);
        b.pad_len_to_multiple(pad_multiple, pad);
        let lengths: Vec<f32> =
            ps.iter().map(|p| p.chosen.trained() as f32).chain(ps.iter().map(|p| p.rejected.trained() as f32)).collect();
        let chosen_tokens: usize = ps.iter().map(|p| p.chosen.trained()).sum();
        let n = idx.len() as i32;
        let rc: Vec<f32> = idx.iter().map(|&i| reference.chosen[i]).collect();
        let rr: Vec<f32> = idx.iter().map(|&i| reference.rejected[i]).collect();
        Ok(PairBatch {
            batch: DeviceBatch::new(&b)?,
            pairs: idx.len(),
            ref_chosen: Array::from_slice(&rc, &[n])?,
            ref_rejected: Array::from_slice(&rr, &[n])?,
            lengths: Array::from_slice(&lengths, &[2 * n])?,
            chosen_tokens,
            chosen_norm: Array::scalar(chosen_tokens.max(1) as f32)?,
            share: 1.0,
        })
    }
}

/// Per-token masked NLL (2B, L) and the summed log-prob of each row's response (2B,).
pub fn sequence_logps(model: &Model, p: &[Array], batch: &DeviceBatch, mode: Mode, path: CePath) -> mlx::Result<(Array, Array)> {
    let h = model.hidden(p, &batch.inputs, mode)?;
    let w = model.head_weight(p)?;
    let nll = mlx::loss::cross_entropy(&h, &w, &batch.targets, CeOptions { weights: Some(&batch.weights), path, compact: batch.compact, ..Default::default() })?;
    let logps = nll.sum(&[1], false)?.neg()?;
    Ok((nll, logps))
}

/// The DPO objective of a batch of pairs with parameter values `p` (for `value_and_grad`):
/// outputs the scalar loss (mean over pairs, plus the SFT term), then per pair (no gradient):
/// policy log-probs of chosen and rejected (sums), chosen and rejected rewards, losses.
pub fn pair_forward(model: &Model, p: &[Array], pb: &PairBatch, mode: Mode, path: CePath, cfg: &DpoLoss, sft_weight: f32) -> mlx::Result<Vec<Array>> {
    let (nll, seq) = sequence_logps(model, p, &pb.batch, mode, path)?;
    let b = pb.pairs as i32;
    let pc = seq.slice_axis(0, 0, b)?;
    let pr = seq.slice_axis(0, b, 2 * b)?;
    let (c_in, r_in, rc_in, rr_in) = if cfg.loss_type.length_normalized() {
        let (lc, lr) = (pb.lengths.slice_axis(0, 0, b)?, pb.lengths.slice_axis(0, b, 2 * b)?);
        (pc.div(&lc)?, pr.div(&lr)?, pb.ref_chosen.div(&lc)?, pb.ref_rejected.div(&lr)?)
    } else {
        (pc.clone(), pr.clone(), pb.ref_chosen.clone(), pb.ref_rejected.clone())
    };
    let t = dpo_loss(&c_in, &r_in, &rc_in, &rr_in, cfg)?;
    let mut loss = t.losses.mean_all()?;
    if sft_weight > 0.0 {
        let chosen_nll = nll.slice_axis(0, 0, b)?.sum_all()?.div(&pb.chosen_norm)?;
        loss = loss.add(&chosen_nll.mul(sft_weight)?)?;
    }
    Ok(vec![loss, pc.stop_gradient()?, pr.stop_gradient()?, t.chosen_rewards, t.rejected_rewards, t.losses.stop_gradient()?])
}

