//! What the loop ([`super`]) and a kind of training agree on: the [`Objective`] a kind
//! implements, and the records the loop hands it for its progress events.

use std::path::{Path, PathBuf};

use serde::Serialize;

use mlx::Array;

use crate::data::Batcher;
use crate::error::{Error, Result};
use crate::models::{Mode, Model};

/// What a progress event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Training loss report (every `steps_per_report` updates).
    Train,
    /// A validation finished.
    Val,
    /// A checkpoint was saved.
    Save,
    /// Training ended.
    Done,
}

/// Why training stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Completed,
    EarlyStopped,
    Cancelled,
}

/// What differs between kinds of training (SFT, DPO); the loop does the rest.
pub(crate) trait Objective {
    /// One batch of an update, ready for the device.
    type Batch;
    /// A progress event, also one line of `metrics.jsonl`.
    type Progress: Serialize;

    /// The `n` batches of the next update (gradient accumulation), drawn in order from `batcher`
    /// (whose position the checkpoints save).
    fn draw(&mut self, batcher: &mut Batcher, n: usize) -> Result<Vec<Self::Batch>>;

    /// Trained tokens of a batch (throughput and `trained_tokens`).
    fn tokens(&self, batch: &Self::Batch) -> usize;

    /// The outputs of one batch with parameter values `p`: `[0]` is the batch's share of the
    /// update's loss (the loop sums the shares and differentiates them); the others are
    /// statistics without gradient, handed to [`Objective::observe`] after the update.
    fn loss(&self, model: &Model, p: &[Array], batch: &Self::Batch, mode: Mode) -> mlx::Result<Vec<Array>>;

    /// Every per-batch value [`Objective::loss`] uses, as arrays, for a compiled update
    /// (`compile = true`): a compiled graph bakes in what its function captures, so these must
    /// be its inputs. None: this objective's updates are not compiled.
    fn batch_inputs(&self, _batch: &Self::Batch) -> mlx::Result<Option<Vec<Array>>> {
        Ok(None)
    }

    /// [`Objective::loss`] from the arrays of [`Objective::batch_inputs`].
    fn loss_from_inputs(&self, _model: &Model, _p: &[Array], _inputs: &[Array], _mode: Mode) -> mlx::Result<Vec<Array>> {
        Err(mlx::Error::InvalidArgument("this objective has no compiled loss".into()))
    }

    /// Whether the reports need the gradient norm (computed, unclipped, when `max_grad_norm` is
    /// unset).
    fn wants_grad_norm(&self) -> bool {
        false
    }

    /// The outputs of every batch of a finished, finite update.
    fn observe(&mut self, _outputs: &[Vec<Array>]) -> Result<()> {
        Ok(())
    }

    /// Whether there is a validation set (without one the last adapter is kept).
    fn has_validation(&self) -> bool;

    /// Validation loss of the current weights (lower is better; it picks the kept adapter and
    /// drives early stopping); None without a validation set.
    fn validate(&mut self, model: &Model) -> Result<Option<f32>>;

    /// The progress event of `record` at `at`.
    fn progress(&mut self, at: &Moment, record: Record<'_>) -> Self::Progress;
}

/// Where the run is when an event happens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    pub event: Event,
    pub step: usize,
    pub iters: usize,
    pub learning_rate: f32,
    pub trained_tokens: usize,
    pub elapsed_s: f32,
}

/// What an event is about.
pub(crate) enum Record<'a> {
    /// A training report over the updates since the last one.
    Train(&'a Window),
    /// A validation with this loss.
    Val(f32),
    /// A checkpoint was written to this directory.
    Save(&'a Path),
    /// The run ended.
    Done(&'a RunSummary),
    /// An update gave a non-finite `loss`; the run stops with `error`. Recorded as the run's
    /// `done` event (so metrics.jsonl says how the run ended), at the last good step, pointing at
    /// the last good checkpoint (None: none was saved).
    NonFinite { loss: f32, error: &'a Error, last_good: Option<&'a Path> },
}

/// Sums over the updates since the last training report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Σ of the update losses.
    pub loss: f64,
    pub steps: usize,
    pub tokens: usize,
    /// Training time (updates only, not validation or checkpoints).
    pub seconds: f64,
    /// Σ of the gradient norms (when computed).
    pub grad_norm: f64,
}

impl Window {
    /// One finished update (`seconds` of training time).
    pub fn add(&mut self, loss: f32, grad_norm: Option<f32>, tokens: usize, seconds: f64) {
        self.loss += loss as f64;
        self.grad_norm += grad_norm.unwrap_or(0.0) as f64;
        self.steps += 1;
        self.tokens += tokens;
        self.seconds += seconds;
    }

    pub fn mean_loss(&self) -> f32 {
        (self.loss / self.steps.max(1) as f64) as f32
    }

    pub fn mean_grad_norm(&self) -> f32 {
        (self.grad_norm / self.steps.max(1) as f64) as f32
    }

    pub fn tokens_per_second(&self) -> f32 {
        (self.tokens as f64 / self.seconds.max(1e-9)) as f32
    }
}

/// What one run of the loop did, SFT or DPO alike: the common part of [`crate::TrainReport`]
/// and [`crate::dpo::DpoReport`] (flattened into their JSON).
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub steps: usize,
    pub stop: StopReason,
    /// Loss of the first update of this run (before any update; the benchmarks compare it).
    pub first_loss: Option<f32>,
    /// Loss of the last update.
    pub final_train_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub best_step: Option<usize>,
    /// Tokens the loss was taken on (SFT: trained tokens; DPO: chosen + rejected responses).
    pub trained_tokens: usize,
    pub train_seconds: f32,
    pub tokens_per_second: f32,
    /// MLX's peak allocated memory, GB.
    pub peak_memory_gb: f32,
    /// `adapters.safetensors` in the run directory.
    pub adapter_file: PathBuf,
    pub trainable_parameters: usize,
    /// Batches whose loss and gradient ran compiled (`compile = true`).
    pub compiled_batches: usize,
    /// Frozen weight matrices multiplied in bf16 on the CPU (`bf16_matmul`).
    pub bf16_matrices: usize,
}

