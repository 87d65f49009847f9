//! DPO (`brain dpo`): preference optimization of a LoRA (or fully fine-tuned) policy against a
//! reference whose log-probs are computed once, before training, and cached.
//!
//! - Reference without a second model: a fresh LoRA starts with `lora_b = 0`, so the initial
//!   policy *is* the base model with adapters disabled; starting from an SFT adapter
//!   (`reference`), the initial policy is that adapter, frozen as the reference. Either way the
//!   reference log-probs of every train and valid pair are computed with the initial weights
//!   before the first update, written to `reference_logps.json` in the run directory (with a
//!   fingerprint of the data and the reference's description) and never recomputed — resume
//!   reads them back. The report and adapter_config.json say which reference was used.
//! - Losses: [`LossType`] sigmoid (default), ipo, hinge, robust; β (0.1); label smoothing; an
//!   optional SFT term (`sft_weight` × the chosen responses' mean NLL).
//! - Metrics with TRL's names ([`DpoMetrics`]); accuracy is per pair.
//! - The SFT trainer's loop ([`crate::train_loop`], DPO's part in `objective`): AdamW +
//!   schedule, checkpoints in `checkpoints/NNNNNNN/` (adapter, optimizer state, state.json; the
//!   last two kept), exact `resume`, best-validation adapter, early stopping, NaN stop, `quick`,
//!   cancel.
//!
//! Data: `DATA/train.jsonl` (and `valid.jsonl`) of pairs (see [`pairs`]). One concept per
//! module: [`pairs`] (data), `reference` (the reference and its cache), `batch` (the forward
//! pass), [`loss`] (the loss family), `metrics` (TRL's metrics, evaluation), `objective` (the
//! loop's DPO part).


mod batch;
pub mod loss;
mod metrics;
mod objective;
pub mod pairs;
mod reference;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::Batcher;
use crate::error::{io, Error, Result};
use crate::models::{Model, Work};
use crate::train_loop::{self, Event, RunSummary};
use crate::trainer::{adapter_config, ce_path, parse_dtype, TrainArgs};

pub use batch::{pair_forward, sequence_logps, PairBatch};
pub use loss::{dpo_loss, DpoLoss, DpoTerms, LossType};
pub use metrics::{evaluate_pairs, evaluate_split, pair_metrics, DpoEvalMetrics, DpoMetrics};
pub use pairs::{collate_pairs, load_pairs, Pair, PairSet};
pub use reference::{reference_logps, RefLogps, Reference, ReferenceCache, REFERENCE_FILE};

/// DPO arguments: the SFT trainer's (model, data, adapter_path, iters, batch_size,
/// learning_rate, lora, resume, …) plus the preference-loss settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DpoArgs {
    #[serde(flatten)]
    pub train: TrainArgs,
    pub beta: f32,
    pub loss_type: LossType,
    /// ε for `sigmoid` (cDPO) and `robust` (required > 0 there).
    pub label_smoothing: f32,
    /// Weight of the SFT (NLL) term on the chosen responses (0: off). Counters falling chosen
    /// rewards (RPO).
    pub sft_weight: f32,
    /// Start from this SFT adapter directory; it is also the frozen reference. None: a fresh
    /// LoRA, and the reference is the base model with adapters disabled.
    pub reference: Option<PathBuf>,
}

impl Default for DpoArgs {
    fn default() -> Self {
        DpoArgs {
            train: TrainArgs { learning_rate: 5e-6, ..TrainArgs::default() },
            beta: 0.1,
            loss_type: LossType::Sigmoid,
            label_smoothing: 0.0,
            sft_weight: 0.0,
            reference: None,
        }
    }
}

impl DpoArgs {
    pub fn loss(&self) -> DpoLoss {
        DpoLoss { loss_type: self.loss_type, beta: self.beta, label_smoothing: self.label_smoothing }
    }
}


/// A progress event (also one line of the run's metrics.jsonl).
#[derive(Debug, Clone, Serialize)]
pub struct DpoProgress {
    pub event: Event,
    pub step: usize,
    pub iters: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub train: Option<DpoMetrics>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub eval: Option<DpoEvalMetrics>,
    pub elapsed_s: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Why the run failed (a `done` event after a NaN/inf loss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of [`dpo`].
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    #[serde(flatten)]
    pub run: RunSummary,
    pub reference: Reference,
    /// [`Reference::describe`].
    pub reference_description: String,
    pub reference_logps_file: PathBuf,
    /// Seconds spent computing the reference log-probs (0 when resumed from the cache).
    pub reference_seconds: f32,
    pub loss_type: LossType,
    pub beta: f32,
    /// The metrics of the last report window (TRL names).
    pub metrics: Option<DpoMetrics>,
    /// The last validation.
    pub eval: Option<DpoEvalMetrics>,
    pub train_pairs: usize,
    pub valid_pairs: usize,
    pub truncated_pairs: usize,
    pub skipped_pairs: usize,
}


/// Run DPO. `progress` is called on every report, validation, checkpoint and at the end.
pub fn dpo(args: &DpoArgs, progress: &mut dyn FnMut(&DpoProgress)) -> Result<DpoReport> {
    let mut args = args.clone();
    args.train = args.train.effective()?;
    let args = &args;
    let cfg = args.loss();
    cfg.validate().map_err(|e| Error::Args(format!("DPO: {e}")))?;
    if args.loss_type == LossType::Robust && args.label_smoothing <= 0.0 {
        return Err(Error::Args("DPO: loss_type robust needs label_smoothing > 0 (the assumed share of flipped labels)".into()));
    }
    let path = ce_path(&args.train.loss)?;
    train_loop::init_mlx(&args.train)?;

    let tok = crate::source::load_tokenizer(&args.train.model)?;
    let pad = tok.pad_id;
    let msl = args.train.max_seq_length;
    let data = &args.train.data;
    if !data.is_dir() {
        return Err(Error::Args(format!("data directory {} does not exist (it should hold train.jsonl, valid.jsonl of preference pairs)", data.display())));
    }
    let train_set = load_pairs(&data.join("train.jsonl"), &tok, msl)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: train.jsonl is missing or has no usable pairs", data.display())))?;
    let valid = load_pairs(&data.join("valid.jsonl"), &tok, msl)?.filter(|s| !s.is_empty());
    if valid.is_none() {
        tracing::warn!("{}: no valid.jsonl; DPO without validation (the last adapter is kept)", data.display());
    }

    let mut model = Model::load(&args.train.model, parse_dtype(&args.train.dtype)?)?;
    let (targs, reference) = reference::policy(args, &mut model)?;
    // Before the reference log-probs, so reference and policy share the same products.
    model.use_bf16_matmul(targs.bf16_matmul, Work::Training)?;
    model.grad_checkpoint = targs.grad_checkpoint;
    let run_dir = targs.adapter_path.clone();
    std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;

    // Reference log-probs: once, with the initial weights, before any update.
    let valid_pairs = valid.as_ref().map(|v| v.pairs.as_slice());
    let (cache, reference_seconds) = reference::cached_logps(&model, &reference, &train_set.pairs, valid_pairs, &targs, pad, path)?;
    tracing::info!("DPO reference: {}", reference.describe());

    let lengths: Vec<usize> = train_set.pairs.iter().map(|p| p.len()).collect();
    let batcher = Batcher::with_sampling(&lengths, &[], &[], targs.batch_size, targs.seed);
    let mut acfg = adapter_config(&targs);
    acfg.extra.insert(
        "dpo".into(),
        serde_json::json!({
            "beta": args.beta, "loss_type": args.loss_type, "label_smoothing": args.label_smoothing,
            "sft_weight": args.sft_weight, "reference": reference, "reference_description": reference.describe(),
        }),
    );
    let world = crate::distributed::world()?;
    world.check_batch_size(targs.batch_size)?;
    let mut obj = objective::Preference {
        args,
        world,
        cfg,
        path,
        pad,
        pad_multiple: targs.pad_multiple()?,
        train: &train_set.pairs,
        train_ref: &cache.train,
        valid: valid_pairs,
        valid_ref: &cache.valid,
        sums: Default::default(),
        last_metrics: None,
        last_eval: None,
    };
    let run = train_loop::run(&targs, &mut model, batcher, &acfg, &mut obj, progress)?;
    Ok(DpoReport {
        run,
        reference_description: reference.describe(),
        reference,
        reference_logps_file: run_dir.join(REFERENCE_FILE),
        reference_seconds,
        loss_type: args.loss_type,
        beta: args.beta,
        metrics: obj.last_metrics,
        eval: obj.last_eval,
        train_pairs: train_set.len(),
        valid_pairs: valid.as_ref().map_or(0, |v| v.len()),
        truncated_pairs: train_set.truncated + valid.as_ref().map_or(0, |v| v.truncated),
        skipped_pairs: train_set.skipped + valid.as_ref().map_or(0, |v| v.skipped),
    })
}
