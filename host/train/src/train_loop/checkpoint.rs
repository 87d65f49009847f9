//! Checkpoints of a run: `checkpoints/NNNNNNN/` holds the trainable weights, AdamW's moments and
//! step, adapter_config.json and `state.json` (the loop's counters and the data position) —
//! everything resume needs to continue exactly. `state.json` is written last, so a checkpoint
//! interrupted while being written is ignored; the newest two are kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapters::{self, AdapterConfig, ADAPTER_FILE};
use crate::data::DataPosition;
use crate::error::{io, model_err, Error, Result};
use crate::models::Model;
use crate::optim::{AdamW, ScheduleKind};
use crate::trainer::TrainArgs;

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// The loop's counters, saved with every checkpoint (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct State {
    pub step: usize,
    pub position: DataPosition,
    pub best_val_loss: Option<f32>,
    pub best_step: Option<usize>,
    /// Validations in a row without improvement (patience).
    pub bad_evals: usize,
    pub trained_tokens: usize,
    pub iters: usize,
    /// What the data position and the optimizer state mean (absent in checkpoints written
    /// before it was recorded).
    #[serde(default)]
    pub settings: Option<Settings>,
}

impl State {
    pub fn new(iters: usize, settings: Settings) -> Self {
        State {
            step: 0,
            position: DataPosition::default(),
            best_val_loss: None,
            best_step: None,
            bad_evals: 0,
            trained_tokens: 0,
            iters,
            settings: Some(settings),
        }
    }
}

/// The settings a checkpoint's data position and optimizer state depend on. The position counts
/// batches of one batch size over one data order, so a resume with another batch size, seed or
/// dataset would point at other examples (or past the end); the schedule and the optimizer
/// follow the learning-rate settings. Resume refuses when any differs (`iters` may change: a
/// finished run can be continued for more updates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub batch_size: usize,
    pub grad_accumulation_steps: usize,
    pub seed: u64,
    pub max_seq_length: usize,
    /// Batches per epoch of the training data (changes with the data).
    pub batches_per_epoch: usize,
    pub learning_rate: f32,
    pub lr_schedule: ScheduleKind,
    pub warmup: usize,
    pub min_learning_rate: f32,
    pub weight_decay: f32,
}

impl Settings {
    pub fn of(args: &TrainArgs, batches_per_epoch: usize) -> Self {
        Settings {
            batch_size: args.batch_size,
            grad_accumulation_steps: args.grad_accumulation_steps,
            seed: args.seed,
            max_seq_length: args.max_seq_length,
            batches_per_epoch,
            learning_rate: args.learning_rate,
            lr_schedule: args.lr_schedule,
            warmup: args.warmup,
            min_learning_rate: args.min_learning_rate,
            weight_decay: args.weight_decay,
        }
    }

    /// An error naming every setting of this run that differs from checkpoint `dir`'s, or `Ok`.
    pub fn check_resume(&self, saved: &Settings, dir: &Path) -> Result<()> {
        let (a, b) = (serde_json::to_value(saved).expect("serializes"), serde_json::to_value(self).expect("serializes"));
        let changed: Vec<String> = a
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| match k.as_str() {
                "batches_per_epoch" => format!("the training data ({v} batches per epoch then, {} now)", b[k]),
                _ => format!("{k} (checkpoint: {v}, now: {})", b[k]),
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        Err(Error::Args(format!(
            "--resume: {} changed since checkpoint {}; resume with the checkpoint's settings, or start a new run in another --adapter-path",
            changed.join(", "),
            dir.display()
        )))
    }
}

/// The complete checkpoints of run directory `run`, oldest first.
fn checkpoint_dirs(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(run.join("checkpoints"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .filter(|(_, p): &(usize, PathBuf)| p.join(STATE_FILE).exists())
        .collect();
    v.sort();
    v
}

/// The newest complete checkpoint of `run` (what `--resume` continues).
pub(super) fn newest(run: &Path) -> Result<PathBuf> {
    checkpoint_dirs(run).pop().map(|(_, dir)| dir).ok_or_else(|| {
        Error::Args(format!("--resume: no checkpoint in {} (run without --resume to start)", run.join("checkpoints").display()))
    })
}

fn trainable_names(model: &Model) -> Vec<String> {
    model.trainable_params().iter().map(|(n, _)| n.to_string()).collect()
}

/// The directory of the checkpoint of update `step` of `run`.
pub(super) fn path(run: &Path, step: usize) -> PathBuf {
    run.join("checkpoints").join(format!("{step:07}"))
}

/// Write the checkpoint of `state.step` under `run` and drop all but the newest two.
pub(super) fn save(run: &Path, state: &State, model: &Model, opt: &AdamW, config: &AdapterConfig) -> Result<PathBuf> {
    let dir = path(run, state.step);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    adapters::save_weights(model, &dir.join(ADAPTER_FILE))?;
    let names = trainable_names(model);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    opt.save(&dir.join(OPTIMIZER_FILE), &refs)?;
    config.write(&dir)?;
    let sp = dir.join(STATE_FILE);
    std::fs::write(&sp, serde_json::to_string_pretty(state).expect("serializes")).map_err(io(&sp))?;
    for (_, old) in checkpoint_dirs(run).iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dir)
}

/// Load checkpoint `dir` into `model` and `opt`; returns its state.
pub(super) fn load(dir: &Path, model: &mut Model, opt: &mut AdamW) -> Result<State> {
    let sp = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
    let state: State = serde_json::from_str(&text).map_err(|e| model_err(&sp, e))?;
    adapters::load_weights(model, &dir.join(ADAPTER_FILE))?;
    let names = trainable_names(model);
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    opt.load(&dir.join(OPTIMIZER_FILE), &refs)?;
    Ok(state)
}
