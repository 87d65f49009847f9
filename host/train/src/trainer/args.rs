//! The arguments of a training run ([`TrainArgs`], shared by SFT and DPO) and what derives from
//! them: the effective arguments of a run (`quick`), the loss path, the compute dtype and the
//! adapter_config.json that records them.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use mlx::loss::CePath;

use crate::adapters::{AdapterConfig, LoraParameters};
use crate::error::{Error, Result};
use crate::optim::ScheduleKind;

/// LoRA settings (mlx-lm's `lora_parameters`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraArgs {
    pub rank: usize,
    /// Absolute scale of the update (mlx-lm's `scale`, not alpha).
    pub scale: f32,
    pub dropout: f32,
    /// Linear layers inside each block: `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`.
    pub keys: Vec<String>,
}

impl Default for LoraArgs {
    fn default() -> Self {
        LoraArgs {
            rank: 8,
            scale: 20.0,
            dropout: 0.0,
            keys: ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"].map(String::from).to_vec(),
        }
    }
}

/// LoRA or full fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FineTuneType {
    #[default]
    Lora,
    Full,
}

/// Training arguments. Names follow mlx-lm's where the concept is the same. Deserializes from a
/// partial table (e.g. brain.toml's `[train]`): missing fields take the defaults, unknown ones
/// are rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainArgs {
    /// Model directory (Hugging Face or mlx-community layout).
    #[serde(alias = "base_model")]
    pub model: PathBuf,
    /// Data directory with train.jsonl, valid.jsonl (optional), test.jsonl (for `--test`).
    pub data: PathBuf,
    /// Run directory: adapters, checkpoints, metrics.
    pub adapter_path: PathBuf,
    pub fine_tune_type: FineTuneType,
    /// Optimizer updates (each uses `grad_accumulation_steps` batches). Overridden by `epochs`.
    pub iters: usize,
    /// Train for this many passes over train.jsonl instead of `iters`.
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub lr_schedule: ScheduleKind,
    /// Linear warmup updates.
    pub warmup: usize,
    /// Learning rate at the end of the cosine schedule.
    pub min_learning_rate: f32,
    pub weight_decay: f32,
    /// Layers (from the last) that get adapters / are trained; -1 (or more than the model has): all.
    pub num_layers: i32,
    pub max_seq_length: usize,
    pub grad_accumulation_steps: usize,
    /// Clip the global gradient norm to this.
    pub max_grad_norm: Option<f32>,
    /// Recompute block activations in the backward pass (less memory, ~30% slower).
    pub grad_checkpoint: bool,
    pub seed: u64,
    pub lora: LoraArgs,
    pub steps_per_report: usize,
    /// Validate every N updates (and at the start and the end).
    pub steps_per_eval: usize,
    /// Validation batches per evaluation; 0: the whole valid set.
    pub val_batches: usize,
    /// Save a checkpoint every N updates.
    pub steps_per_save: usize,
    /// Stop when validation loss has not improved for this many evaluations.
    pub patience: Option<usize>,
    /// Continue from the newest checkpoint in `adapter_path`.
    pub resume: bool,
    /// Start from these adapter weights (mlx-lm's `--resume-adapter-file`; no optimizer state).
    pub resume_adapter_file: Option<PathBuf>,
    /// MLX memory limit in bytes.
    pub memory_limit: Option<usize>,
    /// Compile each batch's loss and gradient (MLX's compile: the graph traced once per batch
    /// shape, simplified, elementwise chains fused), as mlx-lm compiles its step, and the
    /// optimizer update (one fused kernel per parameter where the CPU's fused AdamW does not
    /// apply). Batches are then padded to a multiple of [`COMPILED_LENGTH_MULTIPLE`] tokens so
    /// few lengths are traced; the dropout key is an input, so masks still change every update.
    /// SFT and DPO alike. `None`: on a GPU (where it saves a kernel launch per fused op:
    /// 1.7-2x faster updates measured on an H200), not on the CPU (where the step is matmul-bound
    /// and its elementwise work already in the bridge's fused kernels).
    pub compile: Option<bool>,
    /// On the CPU, multiply the frozen dense weights in bfloat16 (AVX-512 BF16: the activations
    /// rounded to bf16 in the products, sums in f32, as GPUs train), about twice sgemm's rate on
    /// AMD's Zen 4: see `Model::multiply_in_bf16`. `None`: for models stored in bf16 on CPUs where
    /// it outruns sgemm (their weights are then exact; `Model::bf16_matmul_by_default`), else f32
    /// products, exact for the stored weights.
    pub bf16_matmul: Option<bool>,
    /// Smoke run: 10 updates, reporting every update, validating at the end.
    pub quick: bool,
    /// Compute dtype ("float32", "bfloat16", "float16"); default: f32 on CPU, the model's on GPU.
    pub dtype: Option<String>,
    /// Cross-entropy implementation: auto (fused on CPU), fused, composed.
    pub loss: String,
    /// Test batches for [`crate::evaluate_test`]; 0: all.
    pub test_batches: usize,
    /// Set to true (e.g. from a Ctrl-C handler or the progress callback) to stop after the
    /// current update with a checkpoint saved; `resume` continues from there.
    #[serde(skip)]
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for TrainArgs {
    fn default() -> Self {
        TrainArgs {
            model: PathBuf::new(),
            data: PathBuf::from("data"),
            adapter_path: PathBuf::from("adapters"),
            fine_tune_type: FineTuneType::Lora,
            iters: 1000,
            epochs: None,
            batch_size: 4,
            learning_rate: 1e-5,
            lr_schedule: ScheduleKind::Cosine,
            warmup: 0,
            min_learning_rate: 0.0,
            weight_decay: 0.0,
            num_layers: 16,
            max_seq_length: 2048,
            grad_accumulation_steps: 1,
            max_grad_norm: None,
            grad_checkpoint: false,
            seed: 0,
            lora: LoraArgs::default(),
            steps_per_report: 10,
            steps_per_eval: 200,
            val_batches: 25,
            steps_per_save: 100,
            patience: None,
            resume: false,
            resume_adapter_file: None,
            memory_limit: None,
            compile: None,
            bf16_matmul: None,
            quick: false,
            dtype: None,
            loss: "auto".into(),
            test_batches: 0,
            cancel: None,
        }
    }
}

/// With `compile`, batches are padded to a multiple of this many tokens (as mlx-lm pads its
/// batches), so a run traces and compiles at most `max_seq_length / 32` shapes.
pub const COMPILED_LENGTH_MULTIPLE: usize = 32;

impl TrainArgs {
    /// Whether the run compiles (see `compile`): as asked, else on a GPU.
    pub(crate) fn compiles(&self) -> Result<bool> {
        Ok(match self.compile {
            Some(c) => c,
            None => mlx::device::default_device()?.is_gpu(),
        })
    }

    /// The multiple training batches are padded to: [`COMPILED_LENGTH_MULTIPLE`] when the run
    /// compiles, else 1 (to the longest row).
    pub(crate) fn pad_multiple(&self) -> Result<usize> {
        Ok(if self.compiles()? { COMPILED_LENGTH_MULTIPLE } else { 1 })
    }

    /// Whether the adapters draw dropout masks (LoRA with dropout > 0).
    pub(crate) fn uses_dropout(&self) -> bool {
        self.fine_tune_type == FineTuneType::Lora && self.lora.dropout > 0.0
    }

    /// The arguments a run uses: `quick` replaced by its settings (10 updates, reporting every
    /// update, validating and saving at the end), batch settings checked.
    pub(crate) fn effective(&self) -> Result<TrainArgs> {
        let mut a = self.clone();
        if a.quick {
            a.iters = 10;
            a.epochs = None;
            a.steps_per_report = 1;
            a.steps_per_eval = 10;
            a.steps_per_save = 10;
            a.val_batches = a.val_batches.clamp(1, 5);
        }
        if a.batch_size == 0 || a.grad_accumulation_steps == 0 {
            return Err(Error::Args("batch_size and grad_accumulation_steps must be at least 1".into()));
        }
        Ok(a)
    }
}

pub(crate) fn ce_path(s: &str) -> Result<CePath> {
    match s {
        "auto" | "" => Ok(CePath::Auto),
        "fused" => Ok(CePath::Fused),
        "composed" => Ok(CePath::Composed),
        o => Err(Error::Args(format!("loss {o:?}: use auto, fused or composed"))),
    }
}

pub(crate) fn parse_dtype(s: &Option<String>) -> Result<Option<mlx::Dtype>> {
    Ok(match s.as_deref() {
        None => None,
        Some("float32" | "f32" | "fp32") => Some(mlx::Dtype::Float32),
        Some("bfloat16" | "bf16") => Some(mlx::Dtype::Bfloat16),
        Some("float16" | "f16" | "fp16") => Some(mlx::Dtype::Float16),
        Some(o) => return Err(Error::Args(format!("dtype {o:?}: use float32, bfloat16 or float16"))),
    })
}

pub(crate) fn adapter_config(args: &TrainArgs) -> AdapterConfig {
    let mut extra = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        extra.insert(k.to_string(), v);
    };
    put("model", serde_json::json!(args.model));
    put("data", serde_json::json!(args.data));
    put("adapter_path", serde_json::json!(args.adapter_path));
    put("batch_size", serde_json::json!(args.batch_size));
    put("iters", serde_json::json!(args.iters));
    put("learning_rate", serde_json::json!(args.learning_rate));
    put("max_seq_length", serde_json::json!(args.max_seq_length));
    put("seed", serde_json::json!(args.seed));
    put("grad_checkpoint", serde_json::json!(args.grad_checkpoint));
    put("grad_accumulation_steps", serde_json::json!(args.grad_accumulation_steps));
    put("optimizer", serde_json::json!("adamw"));
    put("trainer", serde_json::json!("sam-brain"));
    AdapterConfig {
        fine_tune_type: match args.fine_tune_type {
            FineTuneType::Lora => "lora".into(),
            FineTuneType::Full => "full".into(),
        },
        num_layers: args.num_layers,
        lora_parameters: match args.fine_tune_type {
            FineTuneType::Lora => Some(LoraParameters {
                rank: args.lora.rank,
                scale: args.lora.scale,
                dropout: args.lora.dropout,
                keys: Some(args.lora.keys.clone()),
            }),
            FineTuneType::Full => None,
        },
        extra,
    }
}
