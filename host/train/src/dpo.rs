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
//! - The SFT trainer's machinery: AdamW + schedule ([`crate::optim`]), checkpoints in
//!   `checkpoints/NNNNNNN/` (adapter, optimizer state, state.json; the last two kept),
//!   exact `resume`, best-validation adapter, early stopping, NaN stop, `quick`, cancel.
//!
//! Data: `DATA/train.jsonl` (and `valid.jsonl`) of pairs (see [`pairs`]).

pub mod loss;
pub mod pairs;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use mlx::loss::{CeOptions, CePath};
use mlx::Array;

use crate::adapters::{self, AdapterConfig, ADAPTER_FILE};
use crate::data::{Batcher, DataPosition};
use crate::error::{io, model_err, Error, Result};
use crate::loss::DeviceBatch;
use crate::model::{Mode, Qwen2};
use crate::optim::{clip_grad_norm, AdamW, Schedule};
use crate::tokenizer::Tokenizer;
use crate::trainer::{adapter_config, ce_path, checkpoint_dirs, parse_dtype, peak_gb, Event, FineTuneType, LoraArgs, StopReason, TrainArgs};

pub use loss::{dpo_loss, DpoLoss, DpoTerms, LossType};
pub use pairs::{collate_pairs, load_pairs, Pair, PairSet};

/// The file in the run directory that holds the cached reference log-probs.
pub const REFERENCE_FILE: &str = "reference_logps.json";

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

/// Which reference the log-probs were computed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reference {
    /// The base model with adapters disabled (a fresh LoRA starts at zero).
    Base { model: PathBuf },
    /// A frozen SFT adapter on the base model (the policy starts from it).
    SftAdapter { model: PathBuf, adapter: PathBuf },
}

impl Reference {
    pub fn describe(&self) -> String {
        match self {
            Reference::Base { model } => format!("base model {} (adapters disabled)", model.display()),
            Reference::SftAdapter { model, adapter } => format!("frozen SFT adapter {} on {}", adapter.display(), model.display()),
        }
    }
}

/// Training metrics with TRL's names: means over the pairs (accuracies: the share of pairs whose
/// chosen reward beats the rejected one) or the steps (loss, grad_norm) since the last report.
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

impl DpoEvalMetrics {
    fn from(m: &Sums) -> Self {
        let n = m.pairs.max(1) as f64;
        DpoEvalMetrics {
            eval_loss: (m.loss / n) as f32,
            eval_rewards_chosen: (m.chosen_rewards / n) as f32,
            eval_rewards_rejected: (m.rejected_rewards / n) as f32,
            eval_rewards_margins: ((m.chosen_rewards - m.rejected_rewards) / n) as f32,
            eval_rewards_accuracies: (m.correct as f64 / n) as f32,
            eval_logps_chosen: (m.logps_chosen / n) as f32,
            eval_logps_rejected: (m.logps_rejected / n) as f32,
            eval_pairs: m.pairs,
        }
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
}

/// The outcome of [`dpo`].
#[derive(Debug, Clone, Serialize)]
pub struct DpoReport {
    pub steps: usize,
    pub stop: StopReason,
    pub reference: Reference,
    /// [`Reference::describe`].
    pub reference_description: String,
    pub reference_logps_file: PathBuf,
    /// Seconds spent computing the reference log-probs (0 when resumed from the cache).
    pub reference_seconds: f32,
    pub loss_type: LossType,
    pub beta: f32,
    /// Loss of the first update of this run.
    pub first_loss: Option<f32>,
    /// The metrics of the last report window (TRL names).
    pub metrics: Option<DpoMetrics>,
    /// The last validation.
    pub eval: Option<DpoEvalMetrics>,
    pub best_val_loss: Option<f32>,
    pub best_step: Option<usize>,
    pub train_pairs: usize,
    pub valid_pairs: usize,
    pub truncated_pairs: usize,
    pub skipped_pairs: usize,
    /// Response tokens (chosen + rejected) trained on.
    pub trained_tokens: usize,
    pub train_seconds: f32,
    pub tokens_per_second: f32,
    pub peak_memory: f32,
    pub adapter_file: PathBuf,
    pub trainable_parameters: usize,
}

/// Sums over pairs (and steps) for metrics.
#[derive(Debug, Clone, Default)]
struct Sums {
    pairs: usize,
    correct: usize,
    /// Σ over pairs of the per-pair loss (validation) or Σ over steps of the step loss (training).
    loss: f64,
    chosen_rewards: f64,
    rejected_rewards: f64,
    logps_chosen: f64,
    logps_rejected: f64,
    steps: usize,
    grad_norm: f64,
    tokens: usize,
    seconds: f64,
}

impl Sums {
    fn add_pairs(&mut self, out: &HostOut) {
        self.pairs += out.chosen_rewards.len();
        for i in 0..out.chosen_rewards.len() {
            self.correct += (out.chosen_rewards[i] > out.rejected_rewards[i]) as usize;
            self.chosen_rewards += out.chosen_rewards[i] as f64;
            self.rejected_rewards += out.rejected_rewards[i] as f64;
            self.logps_chosen += out.logps_chosen[i] as f64;
            self.logps_rejected += out.logps_rejected[i] as f64;
        }
    }

    fn metrics(&self, lr: f32) -> DpoMetrics {
        let n = self.pairs.max(1) as f64;
        DpoMetrics {
            loss: (self.loss / self.steps.max(1) as f64) as f32,
            rewards_chosen: (self.chosen_rewards / n) as f32,
            rewards_rejected: (self.rejected_rewards / n) as f32,
            rewards_margins: ((self.chosen_rewards - self.rejected_rewards) / n) as f32,
            rewards_accuracies: (self.correct as f64 / n) as f32,
            logps_chosen: (self.logps_chosen / n) as f32,
            logps_rejected: (self.logps_rejected / n) as f32,
            grad_norm: (self.grad_norm / self.steps.max(1) as f64) as f32,
            learning_rate: lr,
            tokens_per_second: (self.tokens as f64 / self.seconds.max(1e-9)) as f32,
            peak_memory: peak_gb(),
        }
    }
}

/// Cached reference log-probs (sums over each response's tokens) of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RefLogps {
    pub chosen: Vec<f32>,
    pub rejected: Vec<f32>,
}

/// The contents of [`REFERENCE_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCache {
    pub reference: Reference,
    /// [`pairs::fingerprint`] of train and valid pairs, hex.
    pub fingerprint: String,
    pub train: RefLogps,
    pub valid: RefLogps,
}

impl ReferenceCache {
    pub fn read(run: &Path) -> Result<Self> {
        let p = run.join(REFERENCE_FILE);
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text).map_err(|e| model_err(&p, format!("bad reference cache: {e}")))
    }

    fn write(&self, run: &Path) -> Result<()> {
        let p = run.join(REFERENCE_FILE);
        std::fs::write(&p, serde_json::to_string(self).expect("serializes")).map_err(io(&p))
    }
}

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
}

impl PairBatch {
    pub fn new(set: &[Pair], idx: &[usize], reference: &RefLogps, pad: u32) -> Result<Self> {
        let ps: Vec<&Pair> = idx.iter().map(|&i| &set[i]).collect();
        let b = collate_pairs(&ps, pad);
        let lengths: Vec<f32> =
            ps.iter().map(|p| p.chosen.trained() as f32).chain(ps.iter().map(|p| p.rejected.trained() as f32)).collect();
        let chosen_tokens = ps.iter().map(|p| p.chosen.trained()).sum();
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
        })
    }
}

/// Per-token masked NLL (2B, L) and the summed log-prob of each row's response (2B,).
pub fn sequence_logps(model: &Qwen2, p: &[Array], batch: &DeviceBatch, mode: Mode, path: CePath) -> mlx::Result<(Array, Array)> {
    let h = model.hidden(p, &batch.inputs, mode)?;
    let w = model.head_weight(p);
    let nll = mlx::loss::cross_entropy(&h, &w, &batch.targets, CeOptions { weights: Some(&batch.weights), path, ..Default::default() })?;
    let logps = nll.sum(&[1], false)?.neg()?;
    Ok((nll, logps))
}

/// The DPO objective of a batch of pairs with parameter values `p` (for `value_and_grad`):
/// outputs the scalar loss (mean over pairs, plus the SFT term), then per pair (no gradient):
/// policy log-probs of chosen and rejected (sums), chosen and rejected rewards, losses.
pub fn pair_forward(model: &Qwen2, p: &[Array], pb: &PairBatch, mode: Mode, path: CePath, cfg: &DpoLoss, sft_weight: f32) -> mlx::Result<Vec<Array>> {
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
        let chosen_nll = nll.slice_axis(0, 0, b)?.sum_all()?.div(pb.chosen_tokens.max(1) as f32)?;
        loss = loss.add(&chosen_nll.mul(sft_weight)?)?;
    }
    Ok(vec![loss, pc.stop_gradient()?, pr.stop_gradient()?, t.chosen_rewards, t.rejected_rewards, t.losses.stop_gradient()?])
}

/// Metrics of one batch from fixed log-probs, through the same loss and aggregation as
/// training (loss: mean over pairs; accuracies: share of pairs with chosen reward > rejected).
pub fn pair_metrics(policy_chosen: &[f32], policy_rejected: &[f32], ref_chosen: &[f32], ref_rejected: &[f32], cfg: &DpoLoss) -> Result<DpoEvalMetrics> {
    let n = policy_chosen.len() as i32;
    let arr = |v: &[f32]| Array::from_slice(v, &[n]);
    let (pc, pr) = (arr(policy_chosen)?, arr(policy_rejected)?);
    let t = dpo_loss(&pc, &pr, &arr(ref_chosen)?, &arr(ref_rejected)?, cfg)?;
    let h = host_out(&[t.losses.mean_all()?, pc, pr, t.chosen_rewards, t.rejected_rewards, t.losses])?;
    let mut sums = Sums::default();
    sums.loss += h.losses.iter().map(|&l| l as f64).sum::<f64>();
    sums.add_pairs(&h);
    Ok(DpoEvalMetrics::from(&sums))
}

/// Host copies of the per-pair outputs.
struct HostOut {
    logps_chosen: Vec<f32>,
    logps_rejected: Vec<f32>,
    chosen_rewards: Vec<f32>,
    rejected_rewards: Vec<f32>,
    losses: Vec<f32>,
}

fn host_out(outs: &[Array]) -> Result<HostOut> {
    Ok(HostOut {
        logps_chosen: outs[1].to_vec()?,
        logps_rejected: outs[2].to_vec()?,
        chosen_rewards: outs[3].to_vec()?,
        rejected_rewards: outs[4].to_vec()?,
        losses: outs[5].to_vec()?,
    })
}

/// Reference log-probs of every pair of `set` with the model's current parameters.
pub fn reference_logps(model: &Qwen2, set: &[Pair], batch_size: usize, pad: u32, path: CePath) -> Result<RefLogps> {
    let lengths: Vec<usize> = set.iter().map(|p| p.len()).collect();
    let batcher = Batcher::with_sampling(&lengths, &[], &[], batch_size, 0);
    let mut out = RefLogps { chosen: vec![0.0; set.len()], rejected: vec![0.0; set.len()] };
    for g in batcher.eval_groups() {
        let ps: Vec<&Pair> = g.iter().map(|&i| &set[i]).collect();
        let db = DeviceBatch::new(&collate_pairs(&ps, pad))?;
        let (_, seq) = sequence_logps(model, &model.params.values, &db, Mode::default(), path)?;
        let v: Vec<f32> = seq.to_vec()?;
        for (k, &i) in g.iter().enumerate() {
            out.chosen[i] = v[k];
            out.rejected[i] = v[g.len() + k];
        }
    }
    Ok(out)
}

/// DPO loss and reward metrics of the current policy on `set` (at most `max_batches` batches,
/// a fixed selection; 0: all).
pub fn evaluate_pairs(model: &Qwen2, set: &[Pair], reference: &RefLogps, args: &DpoArgs, max_batches: usize, pad: u32) -> Result<DpoEvalMetrics> {
    let path = ce_path(&args.train.loss)?;
    let lengths: Vec<usize> = set.iter().map(|p| p.len()).collect();
    let batcher = Batcher::with_sampling(&lengths, &[], &[], args.train.batch_size.max(1), 0);
    let mut groups: Vec<Vec<usize>> = batcher.eval_groups().to_vec();
    if max_batches > 0 && groups.len() > max_batches {
        crate::rng::Rng::new(0x5EED).shuffle(&mut groups);
        groups.truncate(max_batches);
    }
    let cfg = args.loss();
    let mut sums = Sums::default();
    for g in &groups {
        let pb = PairBatch::new(set, g, reference, pad)?;
        let outs = pair_forward(model, &model.params.values, &pb, Mode::default(), path, &cfg, 0.0)?;
        let h = host_out(&outs)?;
        sums.loss += h.losses.iter().map(|&l| l as f64).sum::<f64>();
        sums.add_pairs(&h);
    }
    Ok(DpoEvalMetrics::from(&sums))
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

/// The policy model and its starting point: a fresh LoRA (reference: base) or an SFT adapter
/// (reference: that adapter). Returns the effective training arguments (LoRA settings of the
/// SFT adapter when starting from one).
fn policy(args: &DpoArgs, model: &mut Qwen2) -> Result<(TrainArgs, Reference)> {
    let mut t = args.train.clone();
    if t.resume_adapter_file.is_some() {
        return Err(Error::Args(
            "DPO: use `reference` (an SFT adapter directory) to start from an adapter; it is then also the frozen reference".into(),
        ));
    }
    if t.num_layers > model.num_layers() as i32 {
        return Err(Error::Args(format!("num_layers {} but the model has {} layers (use -1 for all)", t.num_layers, model.num_layers())));
    }
    let reference = match &args.reference {
        None => {
            match t.fine_tune_type {
                FineTuneType::Lora => model.apply_lora(t.num_layers, &t.lora.keys, t.lora.rank, t.lora.scale, t.lora.dropout, t.seed)?,
                FineTuneType::Full => model.full_fine_tune(t.num_layers)?,
            }
            Reference::Base { model: t.model.clone() }
        }
        Some(dir) => {
            let cfg: AdapterConfig = adapters::load_adapters(model, dir)?;
            t.num_layers = cfg.num_layers;
            match cfg.fine_tune_type.as_str() {
                "full" => t.fine_tune_type = FineTuneType::Full,
                _ => {
                    t.fine_tune_type = FineTuneType::Lora;
                    let lp = cfg.lora_parameters.clone().ok_or_else(|| model_err(dir, "lora_parameters is missing"))?;
                    let keys = cfg.keys();
                    if t.lora.rank != lp.rank || t.lora.keys != keys {
                        tracing::info!("DPO continues the SFT adapter {}: rank {}, keys {:?}", dir.display(), lp.rank, keys);
                    }
                    t.lora = LoraArgs { rank: lp.rank, scale: lp.scale, dropout: lp.dropout, keys };
                }
            }
            Reference::SftAdapter { model: t.model.clone(), adapter: dir.clone() }
        }
    };
    Ok((t, reference))
}

/// Run DPO. `progress` is called on every report, validation, checkpoint and at the end.
pub fn dpo(args: &DpoArgs, progress: &mut dyn FnMut(&DpoProgress)) -> Result<DpoReport> {
    let mut args = args.clone();
    {
        let t = &mut args.train;
        if t.quick {
            t.iters = 10;
            t.epochs = None;
            t.steps_per_report = 1;
            t.steps_per_eval = 10;
            t.steps_per_save = 10;
            t.val_batches = t.val_batches.clamp(1, 5);
        }
        if t.batch_size == 0 || t.grad_accumulation_steps == 0 {
            return Err(Error::Args("batch_size and grad_accumulation_steps must be at least 1".into()));
        }
    }
    let cfg = args.loss();
    cfg.validate().map_err(|e| Error::Args(format!("DPO: {e}")))?;
    if args.loss_type == LossType::Robust && args.label_smoothing <= 0.0 {
        return Err(Error::Args("DPO: loss_type robust needs label_smoothing > 0 (the assumed share of flipped labels)".into()));
    }
    let path = ce_path(&args.train.loss)?;
    if let Some(limit) = args.train.memory_limit {
        mlx::memory::set_memory_limit(limit)?;
    }
    mlx::random::seed(args.train.seed)?;

    let tok = Tokenizer::load(&args.train.model)?;
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

    let mut model = Qwen2::load(&args.train.model, parse_dtype(&args.train.dtype)?)?;
    let (targs, reference) = policy(&args, &mut model)?;
    model.grad_checkpoint = targs.grad_checkpoint;
    let trainable_parameters = model.trainable_params().iter().map(|(_, a)| a.size()).sum();
    let run_dir = targs.adapter_path.clone();
    std::fs::create_dir_all(&run_dir).map_err(io(&run_dir))?;

    // Reference log-probs: once, with the initial weights, before any update.
    let fp = {
        let mut all = train_set.pairs.clone();
        all.extend(valid.iter().flat_map(|v| v.pairs.iter().cloned()));
        format!("{:016x}", pairs::fingerprint(&all))
    };
    let t_ref = Instant::now();
    let cache = if targs.resume {
        let c = ReferenceCache::read(&run_dir)?;
        if c.fingerprint != fp || c.reference != reference {
            return Err(Error::Args(format!(
                "--resume: {} was computed for other data or another reference ({}); start a new run",
                run_dir.join(REFERENCE_FILE).display(),
                c.reference.describe()
            )));
        }
        c
    } else {
        let bs = targs.batch_size;
        let c = ReferenceCache {
            reference: reference.clone(),
            fingerprint: fp,
            train: reference_logps(&model, &train_set.pairs, bs, pad, path)?,
            valid: match &valid {
                Some(v) => reference_logps(&model, &v.pairs, bs, pad, path)?,
                None => RefLogps::default(),
            },
        };
        c.write(&run_dir)?;
        c
    };
    let reference_seconds = if targs.resume { 0.0 } else { t_ref.elapsed().as_secs_f32() };
    tracing::info!("DPO reference: {}", reference.describe());

    let lengths: Vec<usize> = train_set.pairs.iter().map(|p| p.len()).collect();
    let batcher = Batcher::with_sampling(&lengths, &[], &[], targs.batch_size, targs.seed);
    let iters = match targs.epochs {
        Some(e) => (e * batcher.batches_per_epoch()).div_ceil(targs.grad_accumulation_steps).max(1),
        None => targs.iters,
    };
    let schedule = Schedule { kind: targs.lr_schedule, base_lr: targs.learning_rate, warmup: targs.warmup, total: iters, min_lr: targs.min_learning_rate };
    let mut acfg = adapter_config(&targs);
    acfg.extra.insert(
        "dpo".into(),
        serde_json::json!({
            "beta": args.beta, "loss_type": args.loss_type, "label_smoothing": args.label_smoothing,
            "sft_weight": args.sft_weight, "reference": reference, "reference_description": reference.describe(),
        }),
    );
    acfg.write(&run_dir)?;
    let mp = run_dir.join("metrics.jsonl");
    let mut log = MetricsLog(std::fs::OpenOptions::new().create(true).append(true).open(&mp).map_err(io(&mp))?);
    let start = Instant::now();

    let mut run = DpoRun {
        model,
        opt: AdamW::new(targs.weight_decay),
        batcher,
        state: State { step: 0, position: DataPosition::default(), best_val_loss: None, best_step: None, bad_evals: 0, trained_tokens: 0, iters },
        last_checkpoint: None,
    };
    if targs.resume {
        let (_, dir) = checkpoint_dirs(&run_dir).pop().ok_or_else(|| {
            Error::Args(format!("--resume: no checkpoint in {} (run without --resume to start)", run_dir.join("checkpoints").display()))
        })?;
        run.resume_from(&dir)?;
        tracing::info!("resuming DPO from {} (step {})", dir.display(), run.state.step);
    }
    mlx::memory::reset_peak_memory()?;
    let final_adapter = run_dir.join(ADAPTER_FILE);
    let progress_at = |event: Event, step: usize, start: &Instant| DpoProgress {
        event,
        step,
        iters,
        train: None,
        eval: None,
        elapsed_s: start.elapsed().as_secs_f32(),
        path: None,
    };

    let mut last_eval: Option<DpoEvalMetrics> = None;
    let mut validate = |run: &mut DpoRun, cb: &mut dyn FnMut(&DpoProgress), log: &mut MetricsLog| -> Result<bool> {
        let Some(v) = &valid else { return Ok(false) };
        let m = evaluate_pairs(&run.model, &v.pairs, &cache.valid, &args, targs.val_batches, pad)?;
        let improved = run.state.best_val_loss.is_none_or(|b| m.eval_loss < b);
        if improved {
            run.state.best_val_loss = Some(m.eval_loss);
            run.state.best_step = Some(run.state.step);
            run.state.bad_evals = 0;
            adapters::save_weights(&run.model, &final_adapter)?;
        } else {
            run.state.bad_evals += 1;
        }
        let mut p = progress_at(Event::Val, run.state.step, &start);
        p.eval = Some(m);
        log.emit(&p, cb);
        last_eval = Some(m);
        Ok(targs.patience.is_some_and(|pat| run.state.bad_evals >= pat))
    };
    if run.state.step == 0 {
        validate(&mut run, progress, &mut log)?;
    }

    let mut stop = StopReason::Completed;
    let mut first_loss = None;
    let mut last_metrics = None;
    let mut window = Sums::default();
    let (mut total_time, mut total_tokens) = (0f64, 0usize);
    let accum = targs.grad_accumulation_steps;
    while run.state.step < iters {
        let t0 = Instant::now();
        let step = run.state.step + 1;
        let trainable: Vec<Array> = run.model.trainable_params().iter().map(|(_, a)| (*a).clone()).collect();
        let refs: Vec<&Array> = trainable.iter().collect();
        let argnums: Vec<i32> = (0..refs.len() as i32).collect();
        let mut grads: Option<Vec<Array>> = None;
        let mut loss_sum: Option<Array> = None;
        let mut outs_all = Vec::new();
        let mut tokens = 0usize;
        for k in 0..accum {
            let idx = run.batcher.next_indices();
            let pb = PairBatch::new(&train_set.pairs, &idx, &cache.train, pad)?;
            tokens += pb.batch.tokens;
            let mode = Mode { dropout_seed: Some(targs.seed.wrapping_mul(0x1_0000_0001).wrapping_add((step * 64 + k) as u64)) };
            let model = &run.model;
            let (vals, g) = mlx::value_and_grad(
                |xs: &[Array]| {
                    let p = model.with_trainable(xs);
                    let mut o = pair_forward(model, &p, &pb, mode, path, &cfg, args.sft_weight)?;
                    if accum > 1 {
                        o[0] = o[0].div(accum as f32)?;
                    }
                    Ok(o)
                },
                &refs,
                &argnums,
            )?;
            loss_sum = Some(match loss_sum {
                Some(s) => s.add(&vals[0])?,
                None => vals[0].clone(),
            });
            grads = Some(match grads {
                Some(acc) => acc.iter().zip(&g).map(|(a, b)| a.add(b)).collect::<mlx::Result<_>>()?,
                None => g,
            });
            if accum > 1 {
                mlx::eval(grads.iter().flatten().chain(loss_sum.iter()).chain(vals.iter()))?;
            }
            outs_all.push(vals);
        }
        let mut grads = grads.expect("at least one batch");
        let loss_arr = loss_sum.expect("at least one batch");
        let norm = clip_grad_norm(&mut grads, targs.max_grad_norm.unwrap_or(f32::INFINITY))?;
        let lr = schedule.lr(step);
        let new = run.opt.update(&trainable, &grads, lr)?;
        mlx::eval(new.iter().chain(run.opt.state()).chain([&loss_arr, &norm]).chain(outs_all.iter().flatten()))?;
        let loss = loss_arr.item::<f32>()?;
        if !loss.is_finite() {
            let last_good = run.last_checkpoint.as_ref().map_or("none (no checkpoint was saved yet)".to_string(), |p| p.display().to_string());
            return Err(Error::NonFinite { step, loss, last_good });
        }
        run.model.set_trainable(new);
        run.state.step = step;
        run.state.position = run.batcher.position;
        run.state.trained_tokens += tokens;
        first_loss.get_or_insert(loss);
        let dt = t0.elapsed().as_secs_f64();
        for o in &outs_all {
            window.add_pairs(&host_out(o)?);
        }
        window.loss += loss as f64;
        window.grad_norm += norm.item::<f32>()? as f64;
        window.steps += 1;
        window.tokens += tokens;
        window.seconds += dt;
        (total_time, total_tokens) = (total_time + dt, total_tokens + tokens);

        if step.is_multiple_of(targs.steps_per_report.max(1)) || step == iters {
            let m = window.metrics(lr);
            let mut p = progress_at(Event::Train, step, &start);
            p.train = Some(m);
            log.emit(&p, progress);
            last_metrics = Some(m);
            window = Sums::default();
        }
        let cancelled = targs.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
        let mut early = false;
        if step.is_multiple_of(targs.steps_per_eval.max(1)) || step == iters {
            early = validate(&mut run, progress, &mut log)?;
        }
        if step.is_multiple_of(targs.steps_per_save.max(1)) || cancelled || early {
            let dir = run.save_checkpoint(&run_dir, &acfg)?;
            let mut p = progress_at(Event::Save, step, &start);
            p.path = Some(dir);
            log.emit(&p, progress);
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
    let mut p = progress_at(Event::Done, run.state.step, &start);
    p.train = last_metrics;
    p.path = Some(final_adapter.clone());
    log.emit(&p, progress);
    Ok(DpoReport {
        steps: run.state.step,
        stop,
        reference_description: reference.describe(),
        reference,
        reference_logps_file: run_dir.join(REFERENCE_FILE),
        reference_seconds,
        loss_type: args.loss_type,
        beta: args.beta,
        first_loss,
        metrics: last_metrics,
        eval: last_eval,
        best_val_loss: run.state.best_val_loss,
        best_step: run.state.best_step,
        train_pairs: train_set.len(),
        valid_pairs: valid.as_ref().map_or(0, |v| v.len()),
        truncated_pairs: train_set.truncated + valid.as_ref().map_or(0, |v| v.truncated),
        skipped_pairs: train_set.skipped + valid.as_ref().map_or(0, |v| v.skipped),
        trained_tokens: run.state.trained_tokens,
        train_seconds: total_time as f32,
        tokens_per_second,
        peak_memory: peak_gb(),
        adapter_file: final_adapter,
        trainable_parameters,
    })
}

/// The run's metrics.jsonl: every progress event is one line.
struct MetricsLog(std::fs::File);

impl MetricsLog {
    fn emit(&mut self, p: &DpoProgress, cb: &mut dyn FnMut(&DpoProgress)) {
        use std::io::Write;
        if let Ok(line) = serde_json::to_string(p) {
            let _ = writeln!(self.0, "{line}");
        }
        cb(p);
    }
}

/// The trainer's mutable state.
struct DpoRun {
    model: Qwen2,
    opt: AdamW,
    batcher: Batcher,
    state: State,
    last_checkpoint: Option<PathBuf>,
}

impl DpoRun {
    fn names(&self) -> Vec<String> {
        self.model.trainable_params().iter().map(|(n, _)| n.to_string()).collect()
    }

    /// Same layout as the SFT trainer's checkpoints.
    fn save_checkpoint(&mut self, run: &Path, cfg: &AdapterConfig) -> Result<PathBuf> {
        let dir = run.join("checkpoints").join(format!("{:07}", self.state.step));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        adapters::save_weights(&self.model, &dir.join(ADAPTER_FILE))?;
        let names = self.names();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.opt.save(&dir.join("optimizer.safetensors"), &refs)?;
        cfg.write(&dir)?;
        let sp = dir.join("state.json");
        std::fs::write(&sp, serde_json::to_string_pretty(&self.state).expect("serializes")).map_err(io(&sp))?;
        for (_, old) in checkpoint_dirs(run).iter().rev().skip(2) {
            let _ = std::fs::remove_dir_all(old);
        }
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    fn resume_from(&mut self, dir: &Path) -> Result<()> {
        let sp = dir.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
        let state: State = serde_json::from_str(&text).map_err(|e| model_err(&sp, e))?;
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

/// DPO metrics of an adapter on `DATA/{split}.jsonl` with the reference recomputed from its
/// definition (the base model, or `args.reference` loaded as an adapter): a check that the
/// run's cached reference and training did what they claim. `adapter`: the policy's adapter
/// directory (None: the reference itself, all margins 0).
pub fn evaluate_split(args: &DpoArgs, split: &str, adapter: Option<&Path>) -> Result<DpoEvalMetrics> {
    let tok = Tokenizer::load(&args.train.model)?;
    let file = args.train.data.join(format!("{split}.jsonl"));
    let set = load_pairs(&file, &tok, args.train.max_seq_length)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Args(format!("{}: missing or no usable pairs", file.display())))?;
    let dtype = parse_dtype(&args.train.dtype)?;
    let path = ce_path(&args.train.loss)?;
    let mut refm = Qwen2::load(&args.train.model, dtype)?;
    if let Some(r) = &args.reference {
        adapters::load_adapters(&mut refm, r)?;
    }
    let reference = reference_logps(&refm, &set.pairs, args.train.batch_size.max(1), tok.pad_id, path)?;
    drop(refm);
    let mut policy = Qwen2::load(&args.train.model, dtype)?;
    if let Some(a) = adapter {
        adapters::load_adapters(&mut policy, a)?;
    } else if let Some(r) = &args.reference {
        adapters::load_adapters(&mut policy, r)?;
    }
    evaluate_pairs(&policy, &set.pairs, &reference, args, 0, tok.pad_id)
}
