//! The SFT trainer (`brain train`): LoRA or full fine-tuning on chat, completion or text data
//! with the next-token loss on the trained tokens. The loop itself — AdamW, warmup + cosine
//! schedule, gradient accumulation and clipping, validation with best-adapter keeping and early
//! stopping, exact resume, NaN/inf stop, cancel, progress and metrics — is
//! [`crate::train_loop`], shared with DPO; this module is SFT's `Objective` and its report.
//! Also [`evaluate_test`] (`brain train --test`).
//!
//! Run directory (`adapter_path`):
//! - `adapters.safetensors` + `adapter_config.json` — the result, in mlx-lm's format: the
//!   best-validation adapter when there is a validation set, else the last one;
//! - `checkpoints/NNNNNNN/` — adapter, optimizer state and `state.json` (step, data position,
//!   best validation, patience), the last two kept; `--resume` continues from the newest;
//! - `metrics.jsonl` — one JSON object per report, validation, save and the end.

mod args;
mod eval_loss;

use std::path::{Path, PathBuf};

use serde::Serialize;

use mlx::loss::CePath;
use mlx::Array;

use crate::adapters;
use crate::data::{self, Batcher, Dataset};
use crate::error::{Error, Result};
use crate::loss::{nll_sum, DeviceBatch};
use crate::models::{Mode, Model, Work};
use crate::train_loop::{self, peak_gb, Moment, Objective, Record};

pub(crate) use args::{adapter_config, ce_path, parse_dtype};
pub use args::{FineTuneType, LoraArgs, TrainArgs, COMPILED_LENGTH_MULTIPLE};
pub use eval_loss::{evaluate, evaluate_test, TestArgs, TestReport};
pub use train_loop::{Event, RunSummary, StopReason};

/// A progress event (also one line of metrics.jsonl).
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub event: Event,
    pub step: usize,
    pub iters: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_ppl: Option<f32>,
    pub learning_rate: f32,
    /// Trained (loss) tokens per second of training time since the last report.
    pub tokens_per_second: f32,
    pub trained_tokens: usize,
    /// MLX's peak allocated memory so far, GB.
    pub peak_memory_gb: f32,
    pub elapsed_s: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Why the run failed (a `done` event after a NaN/inf loss; `train_loss` is that loss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of [`train`].
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    #[serde(flatten)]
    pub run: RunSummary,
    pub total_parameters: usize,
    pub truncated_examples: usize,
}

/// Train. `progress` is called on every report, validation, checkpoint and at the end.
pub fn train(args: &TrainArgs, progress: &mut dyn FnMut(&Progress)) -> Result<TrainReport> {
    let args = &args.effective()?;
    let path = ce_path(&args.loss)?;
    train_loop::init_mlx(args)?;

    let tok = crate::source::load_tokenizer(&args.model)?;
    let splits = data::load_dir(&args.data, &tok, args.max_seq_length)?;
    let train_set = splits
        .train
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: train.jsonl is missing or has no trainable examples", args.data.display())))?;
    let valid = splits.valid.filter(|d| !d.is_empty());
    if valid.is_none() {
        tracing::warn!("{}: no valid.jsonl; training without validation (the last adapter is kept)", args.data.display());
    }

    let mut model = Model::load(&args.model, parse_dtype(&args.dtype)?)?;
    let layers = layers_to_train(args.num_layers, &model);
    match args.fine_tune_type {
        FineTuneType::Lora => model.apply_lora(layers, &args.lora.keys, args.lora.rank, args.lora.scale, args.lora.dropout, args.seed)?,
        FineTuneType::Full => model.full_fine_tune(layers)?,
    }
    let bf16 = model.use_bf16_matmul(args.bf16_matmul, Work::Training)?;
    if bf16 == 0 && args.bf16_matmul.is_none() && model.can_multiply_in_bf16()? && mlx::bf16mm::tiles_outrun_f32()? {
        tracing::info!("this CPU multiplies bf16 pairs (AVX-512 BF16): --bf16-matmul trains ~1.5x faster, in mixed precision");
    }
    model.grad_checkpoint = args.grad_checkpoint;
    if let Some(f) = &args.resume_adapter_file {
        adapters::load_weights(&mut model, f)?;
    }
    let total_parameters = model.parameter_count();

    let batcher = Batcher::new(&train_set, args.batch_size, args.seed);
    let world = crate::distributed::world()?;
    world.check_batch_size(args.batch_size)?;
    let mut sft = Sft { args, world, train: &train_set, valid: valid.as_ref(), pad: tok.pad_id, pad_multiple: args.pad_multiple()?, path };
    let run = train_loop::run(args, &mut model, batcher, &adapter_config(args), &mut sft, progress)?;
    Ok(TrainReport { run, total_parameters, truncated_examples: train_set.truncated })
}

/// SFT's part of the loop: the next-token loss on `train`'s trained tokens, validated on `valid`.
struct Sft<'a> {
    args: &'a TrainArgs,
    world: crate::distributed::World,
    train: &'a Dataset,
    valid: Option<&'a Dataset>,
    pad: u32,
    /// Training batches are padded to a multiple of this length (see [`COMPILED_LENGTH_MULTIPLE`]).
    pad_multiple: usize,
    path: CePath,
}

/// A batch of an update and the trained tokens of the whole update: each batch contributes its
/// NLL sum divided by them, so the accumulated loss is the update's mean NLL per token whatever
/// the split into batches.
struct SftBatch {
    batch: DeviceBatch,
    update_tokens: f32,
}

impl Objective for Sft<'_> {
    type Batch = SftBatch;
    type Progress = Progress;

    /// The update's global batches; this rank keeps its rows of each, and every rank divides by
    /// the trained tokens of the whole update (see [`crate::distributed`]).
    fn draw(&mut self, batcher: &mut Batcher, n: usize) -> Result<Vec<SftBatch>> {
        let global: Vec<Vec<usize>> = (0..n).map(|_| batcher.next_indices()).collect();
        let update_tokens = global.iter().flatten().map(|&i| self.train.examples[i].trained()).sum::<usize>().max(1) as f32;
        global
            .iter()
            .map(|g| {
                let rows: Vec<&crate::tokenizer::Tokenized> = self.world.shard(g).iter().map(|&i| &self.train.examples[i]).collect();
                let mut batch = data::collate(&rows, self.pad);
                batch.pad_len_to_multiple(self.pad_multiple, self.pad);
                Ok(SftBatch { batch: DeviceBatch::new(&batch)?, update_tokens })
            })
            .collect()
    }

    fn tokens(&self, b: &SftBatch) -> usize {
        b.batch.tokens
    }

    fn loss(&self, model: &Model, p: &[Array], b: &SftBatch, mode: Mode) -> mlx::Result<Vec<Array>> {
        Ok(vec![nll_sum(model, p, &b.batch, mode, self.path)?.div(b.update_tokens)?])
    }

    fn batch_inputs(&self, b: &SftBatch) -> mlx::Result<Option<Vec<Array>>> {
        let d = &b.batch;
        Ok(Some(vec![d.inputs.clone(), d.targets.clone(), d.weights.clone(), Array::scalar(b.update_tokens)?]))
    }

    fn loss_from_inputs(&self, model: &Model, p: &[Array], x: &[Array], mode: Mode) -> mlx::Result<Vec<Array>> {
        let batch = DeviceBatch { inputs: x[0].clone(), targets: x[1].clone(), weights: x[2].clone(), tokens: 0, compact: false };
        Ok(vec![nll_sum(model, p, &batch, mode, self.path)?.div(&x[3])?])
    }

    fn has_validation(&self) -> bool {
        self.valid.is_some()
    }

    fn validate(&mut self, model: &Model) -> Result<Option<f32>> {
        let Some(v) = self.valid else { return Ok(None) };
        Ok(Some(evaluate(model, v, self.args.batch_size, self.args.val_batches, self.pad, self.path)?.0))
    }

    fn progress(&mut self, at: &Moment, record: Record<'_>) -> Progress {
        let mut p = Progress {
            event: at.event,
            step: at.step,
            iters: at.iters,
            train_loss: None,
            val_loss: None,
            val_ppl: None,
            learning_rate: at.learning_rate,
            tokens_per_second: 0.0,
            trained_tokens: at.trained_tokens,
            peak_memory_gb: peak_gb(),
            elapsed_s: at.elapsed_s,
            path: None,
            error: None,
        };
        match record {
            Record::Train(w) => {
                p.train_loss = Some(w.mean_loss());
                p.tokens_per_second = w.tokens_per_second();
            }
            Record::Val(loss) => {
                p.val_loss = Some(loss);
                p.val_ppl = Some(loss.exp());
            }
            Record::Save(dir) => p.path = Some(dir.to_path_buf()),
            Record::Done(o) => {
                p.train_loss = o.final_train_loss;
                p.val_loss = o.best_val_loss;
                p.tokens_per_second = o.tokens_per_second;
                p.path = Some(o.adapter_file.clone());
            }
            // The failed update's loss (null in JSON), at the last good step.
            Record::NonFinite { loss, error, last_good } => {
                p.train_loss = Some(loss);
                p.error = Some(error.to_string());
                p.path = last_good.map(Path::to_path_buf);
            }
        }
        p
    }
}

/// The layers a run trains: `requested` (from the last; -1: all), or all of them when the model
/// has fewer. One rule for SFT and DPO: mlx-lm refuses instead, so its default of 16 fails on
/// small models, while training every layer is what was meant.
pub(crate) fn layers_to_train(requested: i32, model: &Model) -> i32 {
    let n = model.num_layers() as i32;
    if requested > n {
        tracing::warn!("num_layers {requested} but the model has {n} layers; training all of them");
        -1
    } else {
        requested
    }
}
