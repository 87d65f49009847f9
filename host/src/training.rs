//! Runs of the native core, recorded in the registry: SFT, DPO and evaluation as the CLI and the
//! pipeline start them. Each opens a [`Run`], streams its metrics into the store, and closes it
//! as done, failed or interrupted (Ctrl-C / cancel keeps a checkpoint that `--resume` continues).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use brain_train::dpo::{DpoArgs, DpoProgress, DpoReport};
use brain_train::eval::{EvalArgs, EvalReport};
use brain_train::{Progress, StopReason, TrainArgs, TrainReport};

use crate::registry::runs::{mlx_device_name, Run, RunSpec};
use crate::store::Store;

/// Where a run came from, for the registry.
#[derive(Clone, Debug, Default)]
pub struct Lineage {
    pub snapshot_id: Option<String>,
    pub parent_id: Option<String>,
    /// Continue this interrupted run (its id) instead of opening a new one.
    pub resume_run: Option<String>,
}

fn open_run(store: &Store, kind: &str, config: serde_json::Value, base: &Path, adapter: &Path, lineage: &Lineage) -> anyhow::Result<Run> {
    let device = mlx_device_name();
    let run = match &lineage.resume_run {
        Some(id) => Run::resume(store, id, device.as_deref())?,
        None => Run::start(
            store,
            RunSpec {
                kind: kind.into(),
                config,
                snapshot_id: lineage.snapshot_id.clone(),
                parent_id: lineage.parent_id.clone(),
                base_model: Some(base.to_path_buf()),
                adapter: Some(adapter.to_path_buf()),
                dir: Some(adapter.to_path_buf()),
                device,
            },
        )?,
    };
    Ok(run)
}

/// Records a trainer's outcome on its run: done, interrupted (cancelled, checkpoint kept) or
/// failed with the error.
fn close<R: serde::Serialize>(run: Run, result: brain_train::Result<R>, stop: Option<StopReason>, what: impl FnOnce() -> String) -> anyhow::Result<R> {
    match result {
        Ok(report) => {
            let metrics = serde_json::to_value(&report)?;
            if stop == Some(StopReason::Cancelled) {
                run.interrupted("cancelled", metrics)?;
            } else {
                run.done(metrics)?;
            }
            Ok(report)
        }
        Err(e) => {
            run.fail(&e)?;
            Err(anyhow::Error::new(e).context(what()))
        }
    }
}

/// SFT recorded as a run; returns the run id and the trainer's report.
pub fn sft(store: &Store, args: &TrainArgs, lineage: &Lineage, progress: &mut dyn FnMut(&Progress)) -> anyhow::Result<(String, TrainReport)> {
    let run = open_run(store, "sft", serde_json::to_value(args)?, &args.model, &args.adapter_path, lineage)?;
    let id = run.id().to_string();
    let result = brain_train::train(args, &mut |p: &Progress| {
        if let Err(e) = run.log_progress(p) {
            tracing::warn!("run {}: cannot record metrics: {e}", run.id());
        }
        progress(p)
    });
    let stop = result.as_ref().map(|r| r.run.stop).ok();
    close(run, result, stop, || format!("SFT run {id} failed (training data {})", args.data.display())).map(|r| (id, r))
}

/// DPO recorded as a run.
pub fn dpo(store: &Store, args: &DpoArgs, lineage: &Lineage, progress: &mut dyn FnMut(&DpoProgress)) -> anyhow::Result<(String, DpoReport)> {
    let run = open_run(store, "dpo", serde_json::to_value(args)?, &args.train.model, &args.train.adapter_path, lineage)?;
    let id = run.id().to_string();
    let result = brain_train::dpo::dpo(args, &mut |p: &DpoProgress| {
        if let Err(e) = run.log_report(p.step as u64, p) {
            tracing::warn!("run {}: cannot record metrics: {e}", run.id());
        }
        progress(p)
    });
    let stop = result.as_ref().map(|r| r.run.stop).ok();
    close(run, result, stop, || format!("DPO run {id} failed (pairs {})", args.train.data.display())).map(|r| (id, r))
}

/// Evaluation recorded as a run (`kind = eval`). `scorer` scores generations (the quality
/// filter plugins, when configured).
pub fn eval(
    store: &Store,
    args: &EvalArgs,
    lineage: &Lineage,
    scorer: Option<&mut brain_train::eval::Scorer<'_>>,
) -> anyhow::Result<(String, EvalReport)> {
    let adapter = args.adapter_path.last().cloned().unwrap_or_default();
    let run = open_run(store, "eval", serde_json::to_value(args)?, &args.model, &adapter, lineage)?;
    let id = run.id().to_string();
    match brain_train::eval::evaluate(args, scorer) {
        Ok(mut report) => {
            report.samples.truncate(50);
            run.done(serde_json::to_value(&report)?)?;
            Ok((id, report))
        }
        Err(e) => {
            run.fail(&e)?;
            Err(anyhow::Error::new(e).context(format!("evaluation on {} failed", args.data.display())))
        }
    }
}

/// The numbers of an evaluation the registry stores with a model version.
pub fn eval_summary(r: &EvalReport) -> serde_json::Value {
    serde_json::json!({
        "test_loss": r.test_loss,
        "perplexity": r.perplexity,
        "routing_accuracy": r.routing_accuracy,
        "repetition_rate": r.repetition_rate,
        "stop_rate": r.stop_rate,
        "mean_score": r.mean_score,
        "generations": r.generations,
        "examples": r.examples,
    })
}

/// A run directory for a new adapter under `runs_dir`, named by time so runs sort.
pub fn new_run_dir(runs_dir: &Path, kind: &str) -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let dir = runs_dir.join(format!("{kind}-{stamp}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating run directory {}", dir.display()))?;
    Ok(dir)
}

/// The recorded snapshot whose directory holds `data` (e.g. `exports/<id>/chat`), for a run's
/// lineage when it was started by hand on an export.
pub fn snapshot_of(store: &Store, data: &Path) -> anyhow::Result<Option<String>> {
    let Ok(data) = data.canonicalize() else { return Ok(None) };
    Ok(store.snapshots()?.into_iter().find(|s| Path::new(&s.dir).canonicalize().is_ok_and(|d| data.starts_with(d))).map(|s| s.id))
}

/// The lineage of a run started by hand: its data snapshot, and with `resume` the interrupted
/// run of `kind` that wrote to `adapter` (continued instead of a new record).
pub fn cli_lineage(store: &Store, kind: &str, data: &Path, adapter: &Path, resume: bool) -> anyhow::Result<Lineage> {
    let resume_run = if resume {
        crate::registry::runs::latest_interrupted(store, kind)?
            .filter(|r| r.adapter.as_deref().and_then(|a| Path::new(a).canonicalize().ok()).is_some_and(|a| adapter.canonicalize().is_ok_and(|b| a == b)))
            .map(|r| r.id)
    } else {
        None
    };
    Ok(Lineage { snapshot_id: snapshot_of(store, data)?, parent_id: None, resume_run })
}
