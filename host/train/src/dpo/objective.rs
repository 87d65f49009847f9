//! DPO's part of the shared training loop ([`crate::train_loop`]): batches of pairs, the
//! preference loss against the cached reference, validation on the valid pairs, and progress
//! events with TRL's metric names.

use std::path::Path;

use mlx::Array;

use crate::data::Batcher;
use crate::error::Result;
use crate::loss::DeviceBatch;
use crate::models::{Mode, Model};
use crate::train_loop::{Moment, Objective, Record};

use mlx::loss::CePath;

use super::batch::{pair_forward, PairBatch};
use super::loss::DpoLoss;
use super::metrics::{evaluate_pairs, host_out, DpoEvalMetrics, DpoMetrics, PairSums};
use super::pairs::Pair;
use super::reference::RefLogps;
use super::{DpoArgs, DpoProgress};

impl Preference<'_> {
    /// A batch's share of the update's loss: its pairs' share of the global batch, over the
    /// batches accumulated.
    fn loss_weight(&self, b: &PairBatch) -> f32 {
        b.share / self.args.train.grad_accumulation_steps as f32
    }
}

/// Preference optimization of the policy on `train` pairs.
pub(super) struct Preference<'a> {
    /// The run's arguments (`quick` applied).
    pub args: &'a DpoArgs,
    pub world: crate::distributed::World,
    pub cfg: DpoLoss,
    pub path: CePath,
    pub pad: u32,
    /// Training batches are padded to a multiple of this length (32 when compiled).
    pub pad_multiple: usize,
    pub train: &'a [Pair],
    pub train_ref: &'a RefLogps,
    pub valid: Option<&'a [Pair]>,
    pub valid_ref: &'a RefLogps,
    /// Pair statistics since the last report.
    pub sums: PairSums,
    /// The last report's and the last validation's metrics (for the report of the run).
    pub last_metrics: Option<DpoMetrics>,
    pub last_eval: Option<DpoEvalMetrics>,
}

impl Objective for Preference<'_> {
    type Batch = PairBatch;
    type Progress = DpoProgress;

    /// This rank's pairs of each global batch, each batch's loss weighted by its share of the
    /// global batch's pairs (see [`crate::distributed`]).
    fn draw(&mut self, batcher: &mut Batcher, n: usize) -> Result<Vec<PairBatch>> {
        (0..n)
            .map(|_| {
                let global = batcher.next_indices();
                let mine = self.world.shard(&global);
                let mut b = PairBatch::new(self.train, &mine, self.train_ref, self.pad, self.pad_multiple)?;
                b.share = mine.len() as f32 / global.len().max(1) as f32;
                Ok(b)
            })
            .collect()
    }

    fn tokens(&self, b: &PairBatch) -> usize {
        b.batch.tokens
    }

    /// [`pair_forward`]'s outputs, the loss a share of the update's mean over its batches.
    fn loss(&self, model: &Model, p: &[Array], b: &PairBatch, mode: Mode) -> mlx::Result<Vec<Array>> {
        let mut o = pair_forward(model, p, b, mode, self.path, &self.cfg, self.args.sft_weight)?;
        let weight = self.loss_weight(b);
        if weight != 1.0 {
            o[0] = o[0].mul(weight)?;
        }
        Ok(o)
    }

    /// The pair batch's arrays, its SFT divisor and its loss weight.
    fn batch_inputs(&self, b: &PairBatch) -> mlx::Result<Option<Vec<Array>>> {
        let d = &b.batch;
        let arrays = [&d.inputs, &d.targets, &d.weights, &b.ref_chosen, &b.ref_rejected, &b.lengths, &b.chosen_norm];
        Ok(Some(arrays.into_iter().cloned().chain([Array::scalar(self.loss_weight(b))?]).collect()))
    }

    fn loss_from_inputs(&self, model: &Model, p: &[Array], x: &[Array], mode: Mode) -> mlx::Result<Vec<Array>> {
        let batch = DeviceBatch { inputs: x[0].clone(), targets: x[1].clone(), weights: x[2].clone(), tokens: 0, compact: false };
        let pb = PairBatch {
            pairs: x[3].dim(0) as usize,
            batch,
            ref_chosen: x[3].clone(),
            ref_rejected: x[4].clone(),
            lengths: x[5].clone(),
            chosen_tokens: 0,
            chosen_norm: x[6].clone(),
            share: 1.0,
        };
        let mut o = pair_forward(model, p, &pb, mode, self.path, &self.cfg, self.args.sft_weight)?;
        o[0] = o[0].mul(&x[7])?;
        Ok(o)
    }

    /// TRL reports `grad_norm`.
    fn wants_grad_norm(&self) -> bool {
        true
    }

    fn observe(&mut self, outputs: &[Vec<Array>]) -> Result<()> {
        for o in outputs {
            self.sums.add(&host_out(o)?);
        }
        Ok(())
    }

    fn has_validation(&self) -> bool {
        self.valid.is_some()
    }

    fn validate(&mut self, model: &Model) -> Result<Option<f32>> {
        let Some(v) = self.valid else { return Ok(None) };
        let m = evaluate_pairs(model, v, self.valid_ref, self.args, self.args.train.val_batches, self.pad)?;
        self.last_eval = Some(m);
        Ok(Some(m.eval_loss))
    }

    fn progress(&mut self, at: &Moment, record: Record<'_>) -> DpoProgress {
        let mut p = DpoProgress { event: at.event, step: at.step, iters: at.iters, train: None, eval: None, elapsed_s: at.elapsed_s, path: None, error: None };
        match record {
            Record::Train(window) => {
                let m = std::mem::take(&mut self.sums).metrics(window, at.learning_rate);
                self.last_metrics = Some(m);
                p.train = Some(m);
            }
            Record::Val(_) => p.eval = self.last_eval,
            Record::Save(dir) => p.path = Some(dir.to_path_buf()),
            Record::Done(o) => {
                p.train = self.last_metrics;
                p.path = Some(o.adapter_file.clone());
            }
            // No metrics: the failed update's pair statistics are not counted.
            Record::NonFinite { error, last_good, .. } => {
                p.error = Some(error.to_string());
                p.path = last_good.map(Path::to_path_buf);
            }
        }
        p
    }
}
