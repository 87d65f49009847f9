//! `brain pipeline run`: collect → scrub/filter/dedup → auto review → export → SFT (when enough
//! new approved examples arrived, or `--force`) → DPO (when the snapshot has pairs) → eval →
//! register → promote or not. Idempotent and safe under cron: one run at a time ([`lock`]), an
//! interrupted SFT run is resumed from its checkpoint, and every stage's outcome is reported.

pub mod lock;
mod stages;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::store::Store;

pub use stages::{dpo_args_from_config, eval_args_from_config, Stages};

#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Train even below `[pipeline] min_new_examples`.
    pub force: bool,
    /// Say what would happen; change nothing.
    pub dry_run: bool,
    /// Progress bars and per-step lines on stderr.
    pub progress: bool,
    pub quiet: bool,
    /// Stages to run; default `[pipeline] stages` (collect, export, train, dpo, eval).
    pub stages: Option<Vec<String>>,
}

/// What one stage did.
#[derive(Clone, Debug, Serialize)]
pub struct StepOutcome {
    pub stage: String,
    /// `done`, `skipped`, `failed`, `partial` (some sources failed) or `would-run` (dry run).
    pub status: String,
    pub detail: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// The whole run's summary (`--json` prints it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineReport {
    pub steps: Vec<StepOutcome>,
    pub snapshot: Option<String>,
    pub snapshot_dir: Option<PathBuf>,
    pub sft_run: Option<String>,
    pub dpo_run: Option<String>,
    pub eval_run: Option<String>,
    /// The final adapter of this run.
    pub adapter: Option<PathBuf>,
    pub model_version: Option<String>,
    pub promoted: bool,
    pub ok: bool,
}

impl PipelineReport {
    fn step(&mut self, stage: &str, status: &str, detail: impl Into<String>, data: serde_json::Value) {
        let detail = detail.into();
        tracing::info!("pipeline {stage}: {status}: {detail}");
        self.steps.push(StepOutcome { stage: stage.into(), status: status.into(), detail, data });
    }

    /// A readable summary, one line per stage.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.steps.iter().map(|s| s.stage.len()).max().unwrap_or(5);
        for s in &self.steps {
            out.push_str(&format!("{:<width$}  {:<9}  {}\n", s.stage, s.status, s.detail));
        }
        if let Some(v) = &self.model_version {
            out.push_str(&format!("model {v}: {}\n", if self.promoted { "promoted to active" } else { "candidate" }));
        }
        out
    }
}

/// Runs the pipeline under the lock next to the config file.
pub fn run(config: &Config, opts: &PipelineOptions) -> anyhow::Result<PipelineReport> {
    let lock_path = config.path.with_file_name(".brain-pipeline.lock");
    let _lock = if opts.dry_run { None } else { Some(lock::PipelineLock::acquire(&lock_path)?) };
    // A dry run reads an in-memory copy: the store file is not created, migrated or written.
    let mut store = if opts.dry_run { Store::open_copy(&config.store_path)? } else { Store::open(&config.store_path)? };
    let mut report = PipelineReport { ok: true, ..Default::default() };
    let mut stages = Stages::new(config, opts, &mut store, &mut report)?;
    stages.run_all()?;
    Ok(report)
}
