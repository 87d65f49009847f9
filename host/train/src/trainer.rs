//! The SFT trainer: LoRA or full fine-tuning with AdamW, warmup + cosine schedule, gradient
//! accumulation and clipping, optional gradient checkpointing, validation with best-adapter
//! keeping and early stopping, exact resume from checkpoints, NaN/inf stop, progress callback and
//! metrics JSONL. Also [`evaluate_test`] (`brain train --test`).
//!
//! Run directory (`adapter_path`):
//! - `adapters.safetensors` + `adapter_config.json` — the result, in mlx-lm's format: the
//!   best-validation adapter when there is a validation set, else the last one;
//! - `checkpoints/NNNNNNN/` — adapter, optimizer state and `state.json` (step, data position,
//!   best validation, patience), the last two kept; `--resume` continues from the newest;
//! - `metrics.jsonl` — one JSON object per report, validation, save and the end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use mlx::loss::CePath;
use mlx::Array;

use crate::adapters::{self, AdapterConfig, LoraParameters, ADAPTER_FILE};
use crate::data::{self, Batcher, DataPosition, Dataset};
use crate::error::{io, Error, Result};
use crate::loss::{nll_sum, DeviceBatch};
use crate::model::{Mode, Qwen2};
use crate::optim::{clip_grad_norm, AdamW, Schedule, ScheduleKind};
use crate::tokenizer::Tokenizer;

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
    /// Smoke run: 10 updates, reporting every update, validating at the end.
    pub quick: bool,
    /// Compute dtype ("float32", "bfloat16", "float16"); default: f32 on CPU, the model's on GPU.
    pub dtype: Option<String>,
    /// Cross-entropy implementation: auto (fused on CPU), fused, composed.
    pub loss: String,
    /// Test batches for [`evaluate_test`]; 0: all.
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
            quick: false,
            dtype: None,
            loss: "auto".into(),
            test_batches: 0,
            cancel: None,
        }
    }
}

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
}

/// Why training stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Completed,
    EarlyStopped,
    Cancelled,
}

/// The outcome of [`train`].
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub steps: usize,
    pub stop: StopReason,
    /// Loss of the first update of this run (before any update; the benchmark compares it).
    pub first_loss: Option<f32>,
    pub final_train_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub best_step: Option<usize>,
    pub trained_tokens: usize,
    pub train_seconds: f32,
    pub tokens_per_second: f32,
    pub peak_memory_gb: f32,
    pub adapter_file: PathBuf,
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub truncated_examples: usize,
}

/// Test-set evaluation result (`brain train --test --json`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TestReport {
    pub test_loss: f32,
    pub test_ppl: f32,
    pub tokens: usize,
}

/// Saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    position: DataPosition,
    best_val_loss: Option<f32>,
    best_step: Option<usize>,
    bad_evals: usize,
    trained_tokens: usize,
    iters: usize,
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
        Some("float32" | "f32") => Some(mlx::Dtype::Float32),
        Some("bfloat16" | "bf16") => Some(mlx::Dtype::Bfloat16),
        Some("float16" | "f16") => Some(mlx::Dtype::Float16),
        Some(o) => return Err(Error::Args(format!("dtype {o:?}: use float32, bfloat16 or float16"))),
    })
}

pub(crate) fn peak_gb() -> f32 {
    mlx::memory::peak_memory().unwrap_or(0) as f32 / 1e9
}

/// Mean NLL over the trained tokens of `batches` of `ds` (all when `max_batches` is 0, else a
/// fixed, seeded selection of that many).
pub fn evaluate(model: &Qwen2, ds: &Dataset, batch_size: usize, max_batches: usize, pad: u32, path: CePath) -> Result<(f32, usize)> {
    let batcher = Batcher::new(ds, batch_size, 0);
    let mut batches: Vec<data::Batch> = batcher.all_batches(ds, pad).collect();
    if max_batches > 0 && batches.len() > max_batches {
        crate::rng::Rng::new(0x5EED).shuffle(&mut batches);
        batches.truncate(max_batches);
    }
    let mut total = 0f64;
    let mut tokens = 0usize;
    for b in &batches {
        let db = DeviceBatch::new(b)?;
        let s = nll_sum(model, &model.params.values, &db, Mode::default(), path)?;
        total += s.item::<f32>()? as f64;
        tokens += b.tokens;
    }
    if tokens == 0 {
        return Err(Error::Args(format!("{}: no trained tokens to evaluate", ds.path.display())));
    }
    Ok(((total / tokens as f64) as f32, tokens))
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

pub(crate) fn checkpoint_dirs(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .filter(|(_, p): &(usize, PathBuf)| p.join("state.json").exists())
        .collect();
    v.sort();
    v
}

/// The trainer's mutable state.
struct Run<'a> {
    args: &'a TrainArgs,
    model: Qwen2,
    opt: AdamW,
    batcher: Batcher,
    state: State,
    metrics: std::fs::File,
    last_checkpoint: Option<PathBuf>,
    start: Instant,
}

impl Run<'_> {
    fn names(&self) -> Vec<String> {
        self.model.trainable_params().iter().map(|(n, _)| n.to_string()).collect()
    }

    fn log(&mut self, p: &Progress, cb: &mut dyn FnMut(&Progress)) {
        use std::io::Write;
        if let Ok(line) = serde_json::to_string(p) {
            let _ = writeln!(self.metrics, "{line}");
        }
        cb(p);
    }

    fn progress(&self, event: Event, lr: f32) -> Progress {
        Progress {
            event,
            step: self.state.step,
            iters: self.state.iters,
            train_loss: None,
            val_loss: None,
            val_ppl: None,
            learning_rate: lr,
            tokens_per_second: 0.0,
            trained_tokens: self.state.trained_tokens,
            peak_memory_gb: peak_gb(),
            elapsed_s: self.start.elapsed().as_secs_f32(),
            path: None,
        }
    }

    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let dir = self.args.adapter_path.join("checkpoints").join(format!("{:07}", self.state.step));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        adapters::save_weights(&self.model, &dir.join(ADAPTER_FILE))?;
        let names = self.names();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.opt.save(&dir.join("optimizer.safetensors"), &refs)?;
        adapter_config(self.args).write(&dir)?;
        let sp = dir.join("state.json");
        // state.json last: a checkpoint counts only once it is complete.
        std::fs::write(&sp, serde_json::to_string_pretty(&self.state).expect("serializes")).map_err(io(&sp))?;
        for (_, old) in checkpoint_dirs(&self.args.adapter_path).iter().rev().skip(2) {
            let _ = std::fs::remove_dir_all(old);
        }
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    fn resume_from(&mut self, dir: &Path) -> Result<()> {
        let sp = dir.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
        let state: State = serde_json::from_str(&text).map_err(|e| crate::error::model_err(&sp, e))?;
        adapters::load_weights(&mut self.model, &dir.join(ADAPTER_FILE))?;
        let names = self.names();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.opt.load(&dir.join("optimizer.safetensors"), &refs)?;
        self.batcher.position = state.position;
        self.state = State { iters: self.state.iters, ..state };
        self.last_checkpoint = Some(dir.to_path_buf());
        Ok(())
    }
}

/// Train. `progress` is called on every report, validation, checkpoint and at the end.
pub fn train(args: &TrainArgs, progress: &mut dyn FnMut(&Progress)) -> Result<TrainReport> {
    let mut args = args.clone();
    if args.quick {
        args.iters = 10;
        args.epochs = None;
        args.steps_per_report = 1;
        args.steps_per_eval = 10;
        args.steps_per_save = 10;
        args.val_batches = args.val_batches.clamp(1, 5);
    }
    let args = &args;
    if args.batch_size == 0 || args.grad_accumulation_steps == 0 {
        return Err(Error::Args("batch_size and grad_accumulation_steps must be at least 1".into()));
    }
    let path = ce_path(&args.loss)?;
    if let Some(limit) = args.memory_limit {
        mlx::memory::set_memory_limit(limit)?;
    }
    mlx::random::seed(args.seed)?;

    let tok = Tokenizer::load(&args.model)?;
    let splits = data::load_dir(&args.data, &tok, args.max_seq_length)?;
    let train_set = splits
        .train
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: train.jsonl is missing or has no trainable examples", args.data.display())))?;
    let valid = splits.valid.filter(|d| !d.is_empty());
    if valid.is_none() {
        tracing::warn!("{}: no valid.jsonl; training without validation (the last adapter is kept)", args.data.display());
    }

    let mut model = Qwen2::load(&args.model, parse_dtype(&args.dtype)?)?;
    if args.num_layers > model.num_layers() as i32 {
        // mlx-lm refuses (its default of 16 fails on small models); training all layers is
        // what was meant.
        tracing::warn!("num_layers {} but the model has {} layers; training all of them", args.num_layers, model.num_layers());
    }
    match args.fine_tune_type {
        FineTuneType::Lora => model.apply_lora(args.num_layers, &args.lora.keys, args.lora.rank, args.lora.scale, args.lora.dropout, args.seed)?,
        FineTuneType::Full => model.full_fine_tune(args.num_layers)?,
    }
    model.grad_checkpoint = args.grad_checkpoint;
    if let Some(f) = &args.resume_adapter_file {
        adapters::load_weights(&mut model, f)?;
    }
    let trainable_parameters = model.trainable_params().iter().map(|(_, a)| a.size()).sum();
    let total_parameters = model.parameter_count();

    let batcher = Batcher::new(&train_set, args.batch_size, args.seed);
    let iters = match args.epochs {
        Some(e) => (e * batcher.batches_per_epoch()).div_ceil(args.grad_accumulation_steps).max(1),
        None => args.iters,
    };
    let schedule = Schedule { kind: args.lr_schedule, base_lr: args.learning_rate, warmup: args.warmup, total: iters, min_lr: args.min_learning_rate };
    std::fs::create_dir_all(&args.adapter_path).map_err(io(&args.adapter_path))?;
    let mp = args.adapter_path.join("metrics.jsonl");
    let metrics = std::fs::OpenOptions::new().create(true).append(true).open(&mp).map_err(io(&mp))?;
    adapter_config(args).write(&args.adapter_path)?;

    let mut run = Run {
        args,
        model,
        opt: AdamW::new(args.weight_decay),
        batcher,
        state: State { step: 0, position: DataPosition::default(), best_val_loss: None, best_step: None, bad_evals: 0, trained_tokens: 0, iters },
        metrics,
        last_checkpoint: None,
        start: Instant::now(),
    };
    if args.resume {
        let (_, dir) = checkpoint_dirs(&args.adapter_path).pop().ok_or_else(|| {
            Error::Args(format!("--resume: no checkpoint in {} (run without --resume to start)", args.adapter_path.join("checkpoints").display()))
        })?;
        run.resume_from(&dir)?;
        tracing::info!("resuming from {} (step {})", dir.display(), run.state.step);
    }
    mlx::memory::reset_peak_memory()?;

    let pad = tok.pad_id;
    let final_adapter = args.adapter_path.join(ADAPTER_FILE);
    // Validation: at the start (of a fresh run), every steps_per_eval, at the end.
    let validate = |run: &mut Run, cb: &mut dyn FnMut(&Progress)| -> Result<bool> {
        let Some(v) = &valid else { return Ok(false) };
        let (loss, _) = evaluate(&run.model, v, args.batch_size, args.val_batches, pad, path)?;
        let improved = run.state.best_val_loss.is_none_or(|b| loss < b);
        if improved {
            run.state.best_val_loss = Some(loss);
            run.state.best_step = Some(run.state.step);
            run.state.bad_evals = 0;
            adapters::save_weights(&run.model, &final_adapter)?;
        } else {
            run.state.bad_evals += 1;
        }
        let mut p = run.progress(Event::Val, schedule.lr(run.state.step.max(1)));
        p.val_loss = Some(loss);
        p.val_ppl = Some(loss.exp());
        run.log(&p, cb);
        Ok(args.patience.is_some_and(|pat| run.state.bad_evals >= pat))
    };
    if run.state.step == 0 {
        validate(&mut run, progress)?;
    }

    let mut stop = StopReason::Completed;
    let mut first_loss = None;
    let mut last_loss = None;
    let (mut rep_loss, mut rep_steps, mut rep_tokens, mut rep_time) = (0f64, 0usize, 0usize, 0f64);
    let (mut total_time, mut total_tokens) = (0f64, 0usize);
    while run.state.step < iters {
        let t0 = Instant::now();
        let step = run.state.step + 1;
        let batches: Vec<data::Batch> = (0..args.grad_accumulation_steps).map(|_| run.batcher.next_batch(&train_set, pad)).collect();
        let tokens: usize = batches.iter().map(|b| b.tokens).sum();
        let denom = tokens.max(1) as f32;
        let trainable: Vec<Array> = run.model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
        let refs: Vec<&Array> = trainable.iter().collect();
        let argnums: Vec<i32> = (0..refs.len() as i32).collect();
        let mut grads: Option<Vec<Array>> = None;
        let mut loss_sum: Option<Array> = None;
        for (k, b) in batches.iter().enumerate() {
            let db = DeviceBatch::new(b)?;
            let mode = Mode { dropout_seed: Some(args.seed.wrapping_mul(0x1_0000_0001).wrapping_add((step * 64 + k) as u64)) };
            let model = &run.model;
            let (vals, g) = mlx::value_and_grad(
                |xs: &[Array]| {
                    let p = model.with_trainable(xs);
                    Ok(vec![nll_sum(model, &p, &db, mode, path)?.div(denom)?])
                },
                &refs,
                &argnums,
            )?;
            let l = vals.into_iter().next().expect("loss");
            loss_sum = Some(match loss_sum {
                Some(s) => s.add(&l)?,
                None => l,
            });
            grads = Some(match grads {
                Some(acc) => acc.iter().zip(&g).map(|(a, b)| a.add(b)).collect::<mlx::Result<_>>()?,
                None => g,
            });
            if args.grad_accumulation_steps > 1 {
                mlx::eval(grads.iter().flatten().chain(loss_sum.iter()))?;
            }
        }
        let mut grads = grads.expect("at least one batch");
        let loss_arr = loss_sum.expect("at least one batch");
        if let Some(max) = args.max_grad_norm {
            clip_grad_norm(&mut grads, max)?;
        }
        let lr = schedule.lr(step);
        let new = run.opt.update(&trainable, &grads, lr)?;
        mlx::eval(new.iter().chain(run.opt.state()).chain(std::iter::once(&loss_arr)))?;
        let loss = loss_arr.item::<f32>()?;
        if !loss.is_finite() {
            let last_good = run.last_checkpoint.as_ref().map_or("none (no checkpoint was saved yet)".to_string(), |p| p.display().to_string());
            let mut p = run.progress(Event::Done, lr);
            p.train_loss = Some(loss);
            run.log(&p, progress);
            return Err(Error::NonFinite { step, loss, last_good });
        }
        run.model.set_trainable(new);
        run.state.step = step;
        run.state.position = run.batcher.position;
        run.state.trained_tokens += tokens;
        first_loss.get_or_insert(loss);
        last_loss = Some(loss);
        let dt = t0.elapsed().as_secs_f64();
        (rep_loss, rep_steps, rep_tokens, rep_time) = (rep_loss + loss as f64, rep_steps + 1, rep_tokens + tokens, rep_time + dt);
        (total_time, total_tokens) = (total_time + dt, total_tokens + tokens);

        if step.is_multiple_of(args.steps_per_report.max(1)) || step == iters {
            let mut p = run.progress(Event::Train, lr);
            p.train_loss = Some((rep_loss / rep_steps as f64) as f32);
            p.tokens_per_second = (rep_tokens as f64 / rep_time.max(1e-9)) as f32;
            run.log(&p, progress);
            (rep_loss, rep_steps, rep_tokens, rep_time) = (0.0, 0, 0, 0.0);
        }
        let cancelled = args.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
        let mut early = false;
        if step.is_multiple_of(args.steps_per_eval.max(1)) || step == iters {
            early = validate(&mut run, progress)?;
        }
        if step.is_multiple_of(args.steps_per_save.max(1)) || cancelled || early {
            let dir = run.save_checkpoint()?;
            let mut p = run.progress(Event::Save, lr);
            p.path = Some(dir);
            run.log(&p, progress);
        }
        if early {
            stop = StopReason::EarlyStopped;
            break;
        }
        if cancelled {
            stop = StopReason::Cancelled;
            break;
        }
    }
    if valid.is_none() || !final_adapter.exists() {
        adapters::save_weights(&run.model, &final_adapter)?;
    }
    let tokens_per_second = (total_tokens as f64 / total_time.max(1e-9)) as f32;
    let mut p = run.progress(Event::Done, schedule.lr(run.state.step.max(1)));
    p.train_loss = last_loss;
    p.val_loss = run.state.best_val_loss;
    p.tokens_per_second = tokens_per_second;
    p.path = Some(final_adapter.clone());
    run.log(&p, progress);
    Ok(TrainReport {
        steps: run.state.step,
        stop,
        first_loss,
        final_train_loss: last_loss,
        best_val_loss: run.state.best_val_loss,
        best_step: run.state.best_step,
        trained_tokens: run.state.trained_tokens,
        train_seconds: total_time as f32,
        tokens_per_second,
        peak_memory_gb: peak_gb(),
        adapter_file: final_adapter,
        trainable_parameters,
        total_parameters,
        truncated_examples: train_set.truncated,
    })
}

/// Arguments of [`evaluate_test`].
#[derive(Debug, Clone)]
pub struct TestArgs {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Adapter directory (ours or mlx-lm's); None: the bare model.
    pub adapter_path: Option<PathBuf>,
    pub batch_size: usize,
    pub max_seq_length: usize,
    /// 0: all test batches.
    pub test_batches: usize,
    pub dtype: Option<String>,
    pub loss: String,
}

impl TrainArgs {
    /// Test arguments of this configuration (using its adapter when it exists).
    pub fn test_args(&self) -> TestArgs {
        let has = self.adapter_path.join(ADAPTER_FILE).exists();
        TestArgs {
            model: self.model.clone(),
            data: self.data.clone(),
            adapter_path: has.then(|| self.adapter_path.clone()),
            batch_size: self.batch_size,
            max_seq_length: self.max_seq_length,
            test_batches: self.test_batches,
            dtype: self.dtype.clone(),
            loss: self.loss.clone(),
        }
    }
}

/// Test loss and perplexity on `DATA/test.jsonl` (no training), like mlx-lm's `--test`.
pub fn evaluate_test(args: &TestArgs) -> Result<TestReport> {
    let tok = Tokenizer::load(&args.model)?;
    let path = args.data.join("test.jsonl");
    let test = data::load_split(&path, &tok, args.max_seq_length)?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: missing or empty (needed for --test)", path.display())))?;
    let mut model = Qwen2::load(&args.model, parse_dtype(&args.dtype)?)?;
    if let Some(a) = &args.adapter_path {
        adapters::load_adapters(&mut model, a)?;
    }
    let (loss, tokens) = evaluate(&model, &test, args.batch_size.max(1), args.test_batches, tok.pad_id, ce_path(&args.loss)?)?;
    Ok(TestReport { test_loss: loss, test_ppl: loss.exp(), tokens })
}
