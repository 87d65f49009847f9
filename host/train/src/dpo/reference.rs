//! The DPO reference: which model it is ([`Reference`]: the base model with adapters disabled, or
//! a frozen SFT adapter the policy starts from) and its log-probs of every pair, computed once
//! with the initial weights and cached in the run directory ([`REFERENCE_FILE`]) with a
//! fingerprint of the data, so resume reads them back instead of recomputing them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use mlx::loss::CePath;

use crate::adapters::{self, AdapterConfig};
use crate::data::Batcher;
use crate::error::{io, model_err, Error, Result};
use crate::loss::DeviceBatch;
use crate::models::{Mode, Model};
use crate::trainer::{FineTuneType, LoraArgs, TrainArgs};

use super::batch::sequence_logps;
use super::pairs::{self, collate_pairs, Pair};
use super::DpoArgs;

/// The file in the run directory that holds the cached reference log-probs.
pub const REFERENCE_FILE: &str = "reference_logps.json";

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
    /// One line for logs, the report and adapter_config.json.
    pub fn describe(&self) -> String {
        match self {
            Reference::Base { model } => format!("base model {} (adapters disabled)", model.display()),
            Reference::SftAdapter { model, adapter } => format!("frozen SFT adapter {} on {}", adapter.display(), model.display()),
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
    /// The cache of run directory `run`.
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

/// Reference log-probs of every pair of `set` with the model's current parameters.
pub fn reference_logps(model: &Model, set: &[Pair], batch_size: usize, pad: u32, path: CePath) -> Result<RefLogps> {
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

/// The run's reference log-probs of `train` and `valid`: computed with `model`'s current (the
/// initial) weights and written to the run directory, or on `resume` read back — refused when
/// they were computed for other data or another reference. Also the seconds spent computing
/// (0 when read back).
pub(super) fn cached_logps(
    model: &Model,
    reference: &Reference,
    train: &[Pair],
    valid: Option<&[Pair]>,
    args: &TrainArgs,
    pad: u32,
    path: CePath,
) -> Result<(ReferenceCache, f32)> {
    let run = &args.adapter_path;
    let fp = {
        let mut all = train.to_vec();
        all.extend(valid.into_iter().flatten().cloned());
        format!("{:016x}", pairs::fingerprint(&all))
    };
    if args.resume {
        let c = ReferenceCache::read(run)?;
        if c.fingerprint != fp || &c.reference != reference {
            return Err(Error::Args(format!(
                "--resume: {} was computed for other data or another reference ({}); start a new run",
                run.join(REFERENCE_FILE).display(),
                c.reference.describe()
            )));
        }
        return Ok((c, 0.0));
    }
    let t0 = Instant::now();
    let bs = args.batch_size;
    let c = ReferenceCache {
        reference: reference.clone(),
        fingerprint: fp,
        train: reference_logps(model, train, bs, pad, path)?,
        valid: match valid {
            Some(v) => reference_logps(model, v, bs, pad, path)?,
            None => RefLogps::default(),
        },
    };
    c.write(run)?;
    Ok((c, t0.elapsed().as_secs_f32()))
}

/// The policy model and its starting point: a fresh LoRA (reference: base) or an SFT adapter
/// (reference: that adapter). Returns the effective training arguments (LoRA settings of the
/// SFT adapter when starting from one).
pub(super) fn policy(args: &DpoArgs, model: &mut Model) -> Result<(TrainArgs, Reference)> {
    let mut t = args.train.clone();
    if t.resume_adapter_file.is_some() {
        return Err(Error::Args(
            "DPO: use `reference` (an SFT adapter directory) to start from an adapter; it is then also the frozen reference".into(),
        ));
    }
    t.num_layers = crate::trainer::layers_to_train(t.num_layers, model);
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

