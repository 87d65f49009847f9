//! DPO metrics with TRL's names: per-pair sums of rewards, accuracies and log-probs turned into
//! training reports ([`DpoMetrics`]) and validation results ([`DpoEvalMetrics`]), and the
//! evaluation of a policy on a split of pairs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use mlx::Array;

use crate::adapters;
use crate::data::Batcher;
use crate::error::{Error, Result};
use crate::models::{Mode, Model, Work};
use crate::train_loop::{peak_gb, Window};
use crate::trainer::{ce_path, parse_dtype};

use super::batch::{pair_forward, PairBatch};
use super::loss::{dpo_loss, DpoLoss};
use super::pairs::{load_pairs, Pair};
use super::reference::{reference_logps, RefLogps};
use super::DpoArgs;

/// Training metrics with TRL's names: means over the pairs (accuracies: the share of pairs whose
/// chosen reward beats the rejected one) or the updates (loss, grad_norm) since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DpoMetrics {
    pub loss: f32,
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f32,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f32,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f32,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f32,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f32,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f32,
    pub grad_norm: f32,
    pub learning_rate: f32,
    pub tokens_per_second: f32,
    /// GB.
    pub peak_memory: f32,
}

/// Validation metrics (TRL's `eval_` names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DpoEvalMetrics {
    pub eval_loss: f32,
    #[serde(rename = "eval_rewards/chosen")]
    pub eval_rewards_chosen: f32,
    #[serde(rename = "eval_rewards/rejected")]
    pub eval_rewards_rejected: f32,
    #[serde(rename = "eval_rewards/margins")]
    pub eval_rewards_margins: f32,
    #[serde(rename = "eval_rewards/accuracies")]
    pub eval_rewards_accuracies: f32,
    #[serde(rename = "eval_logps/chosen")]
    pub eval_logps_chosen: f32,
    #[serde(rename = "eval_logps/rejected")]
    pub eval_logps_rejected: f32,
    /// Pairs evaluated.
    pub eval_pairs: usize,
}

/// Sums over the pairs since the last report (training) or of a whole evaluation.
#[derive(Debug, Clone, Default)]
pub(super) struct PairSums {
    pairs: usize,
    /// Pairs whose chosen reward beats the rejected one.
    correct: usize,
    /// Σ of the per-pair losses (validation; the training loss is the updates' mean).
    loss: f64,
    chosen_rewards: f64,
    rejected_rewards: f64,
    logps_chosen: f64,
    logps_rejected: f64,
}

impl PairSums {
    pub(super) fn add(&mut self, out: &HostOut) {
        self.loss += out.losses.iter().map(|&l| l as f64).sum::<f64>();
        self.pairs += out.chosen_rewards.len();
        for i in 0..out.chosen_rewards.len() {
            self.correct += (out.chosen_rewards[i] > out.rejected_rewards[i]) as usize;
            self.chosen_rewards += out.chosen_rewards[i] as f64;
            self.rejected_rewards += out.rejected_rewards[i] as f64;
            self.logps_chosen += out.logps_chosen[i] as f64;
            self.logps_rejected += out.logps_rejected[i] as f64;
        }
    }

    /// Means over the pairs, in TRL's order: rewards chosen, rejected, margins, accuracies;
    /// log-probs chosen, rejected.
    fn means(&self) -> [f32; 6] {
        let n = self.pairs.max(1) as f64;
        [
            (self.chosen_rewards / n) as f32,
            (self.rejected_rewards / n) as f32,
            ((self.chosen_rewards - self.rejected_rewards) / n) as f32,
            (self.correct as f64 / n) as f32,
            (self.logps_chosen / n) as f32,
            (self.logps_rejected / n) as f32,
        ]
    }

    /// A training report: pair means from these sums; loss, gradient norm and throughput from
    /// the loop's window of updates.
    pub(super) fn metrics(&self, window: &Window, lr: f32) -> DpoMetrics {
        let [rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies, logps_chosen, logps_rejected] = self.means();
        DpoMetrics {
            loss: window.mean_loss(),
            rewards_chosen,
            rewards_rejected,
            rewards_margins,
            rewards_accuracies,
            logps_chosen,
            logps_rejected,
            grad_norm: window.mean_grad_norm(),
            learning_rate: lr,
            tokens_per_second: window.tokens_per_second(),
            peak_memory: peak_gb(),
        }
    }

    /// An evaluation: everything a mean over the pairs.
    fn eval(&self) -> DpoEvalMetrics {
        let [eval_rewards_chosen, eval_rewards_rejected, eval_rewards_margins, eval_rewards_accuracies, eval_logps_chosen, eval_logps_rejected] = self.means();
        DpoEvalMetrics {
            eval_loss: (self.loss / self.pairs.max(1) as f64) as f32,
            eval_rewards_chosen,
            eval_rewards_rejected,
            eval_rewards_margins,
            eval_rewards_accuracies,
            eval_logps_chosen,
            eval_logps_rejected,
            eval_pairs: self.pairs,
        }
    }
}

/// Metrics of one batch from fixed log-probs, through the same loss and aggregation as
/// training (loss: mean over pairs; accuracies: share of pairs with chosen reward > rejected).
pub fn pair_metrics(policy_chosen: &[f32], policy_rejected: &[f32], ref_chosen: &[f32], ref_rejected: &[f32], cfg: &DpoLoss) -> Result<DpoEvalMetrics> {
    let n = policy_chosen.len() as i32;
    let arr = |v: &[f32]| Array::from_slice(v, &[n]);
    let (pc, pr) = (arr(policy_chosen)?, arr(policy_rejected)?);
    let t = dpo_loss(&pc, &pr, &arr(ref_chosen)?, &arr(ref_rejected)?, cfg)?;
    let h = host_out(&[t.losses.mean_all()?, pc, pr, t.chosen_rewards, t.rejected_rewards, t.losses])?;
    let mut sums = PairSums::default();
    sums.add(&h);
    Ok(sums.eval())
}

/// Host copies of the per-pair outputs of [`pair_forward`].
pub(super) struct HostOut {
    logps_chosen: Vec<f32>,
    logps_rejected: Vec<f32>,
    chosen_rewards: Vec<f32>,
    rejected_rewards: Vec<f32>,
    losses: Vec<f32>,
}

pub(super) fn host_out(outs: &[Array]) -> Result<HostOut> {
    Ok(HostOut {
        logps_chosen: outs[1].to_vec()?,
        logps_rejected: outs[2].to_vec()?,
        chosen_rewards: outs[3].to_vec()?,
        rejected_rewards: outs[4].to_vec()?,
        losses: outs[5].to_vec()?,
    })
}

/// DPO loss and reward metrics of the current policy on `set` (at most `max_batches` batches,
/// a fixed selection; 0: all).
pub fn evaluate_pairs(model: &Model, set: &[Pair], reference: &RefLogps, args: &DpoArgs, max_batches: usize, pad: u32) -> Result<DpoEvalMetrics> {
    let path = ce_path(&args.train.loss)?;
    let lengths: Vec<usize> = set.iter().map(|p| p.len()).collect();
    let batcher = Batcher::with_sampling(&lengths, &[], &[], args.train.batch_size.max(1), 0);
    let mut groups: Vec<Vec<usize>> = batcher.eval_groups().to_vec();
    if max_batches > 0 && groups.len() > max_batches {
        crate::rng::Rng::new(0x5EED).shuffle(&mut groups);
        groups.truncate(max_batches);
    }
    let cfg = args.loss();
    let mut sums = PairSums::default();
    for g in &groups {
        let pb = PairBatch::new(set, g, reference, pad, 1)?;
        let outs = pair_forward(model, &model.params.values, &pb, Mode::default(), path, &cfg, 0.0)?;
        sums.add(&host_out(&outs)?);
    }
    Ok(sums.eval())
}

/// DPO metrics of an adapter on `DATA/{split}.jsonl` with the reference recomputed from its
/// definition (the base model, or `args.reference` loaded as an adapter): a check that the
/// run's cached reference and training did what they claim. `adapter`: the policy's adapter
/// directory (None: the reference itself, all margins 0).
pub fn evaluate_split(args: &DpoArgs, split: &str, adapter: Option<&Path>) -> Result<DpoEvalMetrics> {
    let tok = crate::source::load_tokenizer(&args.train.model)?;
    let file = args.train.data.join(format!("{split}.jsonl"));
    let set = load_pairs(&file, &tok, args.train.max_seq_length)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: missing or no usable pairs", file.display())))?;
    let dtype = parse_dtype(&args.train.dtype)?;
    let path = ce_path(&args.train.loss)?;
    let mut refm = Model::load(&args.train.model, dtype)?;
    if let Some(r) = &args.reference {
        adapters::load_adapters(&mut refm, r)?;
    }
    refm.use_bf16_matmul(args.train.bf16_matmul, Work::Training)?;
    let reference = reference_logps(&refm, &set.pairs, args.train.batch_size.max(1), tok.pad_id, path)?;
    drop(refm);
    let mut policy = Model::load(&args.train.model, dtype)?;
    if let Some(a) = adapter {
        adapters::load_adapters(&mut policy, a)?;
    } else if let Some(r) = &args.reference {
        adapters::load_adapters(&mut policy, r)?;
    }
    policy.use_bf16_matmul(args.train.bf16_matmul, Work::Training)?;
    evaluate_pairs(&policy, &set.pairs, &reference, args, 0, tok.pad_id)
}
