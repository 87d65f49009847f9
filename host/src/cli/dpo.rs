//! `brain dpo`: preference tuning (DPO and variants) on `{"prompt","chosen","rejected"}` pairs.
//! Flags as `brain train`'s plus `--beta` and `--loss-type`; `[dpo]` in brain.toml gives defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use brain_train::dpo::LossType;

use super::train::{Registered, RunFlags};
use super::{print_json, Ctx};
use crate::pipeline::dpo_args_from_config;
use crate::registry::models;
use crate::store::Store;
use crate::training::{self, Lineage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlags,
    /// Start from this SFT adapter; it is also the frozen reference (default: [dpo] reference_adapter,
    /// else the base model with adapters disabled).
    #[arg(long)]
    pub reference_adapter: Option<PathBuf>,
    #[arg(long)]
    pub beta: Option<f32>,
    #[arg(long, value_parser = ["sigmoid", "ipo", "hinge", "robust"])]
    pub loss_type: Option<String>,
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Weight of an SFT (NLL) term on the chosen responses.
    #[arg(long)]
    pub sft_weight: Option<f32>,
}

pub fn run(ctx: &Ctx, f: Args) -> anyhow::Result<ExitCode> {
    let config = if ctx.config_path.exists() { ctx.config()? } else { crate::config::Config::from_str("", &ctx.config_path)? };
    let model = f.run.model.clone().or_else(|| config.dpo.base_model.clone()).or_else(|| config.train.base_model.clone());
    let Some(model) = model else { bail!("no model: pass --model DIR or set [dpo]/[train] base_model") };
    let data = f.run.data.clone().or_else(|| config.dpo.data.clone());
    let Some(data) = data else { bail!("no data: pass --data DIR (a directory with train.jsonl of pairs) or set [dpo] data") };
    let adapter = f.run.adapter_path.clone().unwrap_or_else(|| config.dpo.adapter_path.clone());
    let mut args = dpo_args_from_config(&config, model, data, adapter, f.reference_adapter.clone())?;
    f.run.apply(&mut args.train);
    if let Some(b) = f.beta {
        args.beta = b;
    }
    if let Some(l) = &f.loss_type {
        args.loss_type = LossType::parse(l).unwrap_or_default();
    }
    if let Some(s) = f.label_smoothing {
        args.label_smoothing = s;
    }
    if let Some(w) = f.sft_weight {
        args.sft_weight = w;
    }

    let quiet = ctx.quiet || ctx.json;
    let mut progress = |p: &brain_train::dpo::DpoProgress| {
        if let (false, Some(m)) = (quiet, &p.train) {
            eprintln!(
                "[{}/{}] loss {:.4} rewards/chosen {:.3} rewards/rejected {:.3} margins {:.3} accuracies {:.2}",
                p.step, p.iters, m.loss, m.rewards_chosen, m.rewards_rejected, m.rewards_margins, m.rewards_accuracies
            );
        }
    };
    // In a group of ranks (`brain launch`), rank 0 records the run; the others only train.
    let main = brain_train::distributed::world()?.is_main();
    let (id, report, registered) = if f.run.no_register || !main {
        let report = brain_train::dpo::dpo(&args, &mut progress).with_context(|| format!("DPO on {}", args.train.data.display()))?;
        (String::new(), report, None)
    } else {
        let store = ctx.open_store(&config)?;
        let lineage = training::cli_lineage(&store, "dpo", &args.train.data, &args.train.adapter_path, args.train.resume)?;
        let lineage = Lineage { parent_id: reference_run(&store, args.reference.as_deref())?, ..lineage };
        let (id, report) = training::dpo(&store, &args, &lineage, &mut progress)?;
        let version = if report.run.stop == brain_train::StopReason::Cancelled {
            None
        } else {
            let eval = serde_json::json!({
                "val_loss": report.run.best_val_loss,
                "eval_rewards_margins": report.eval.as_ref().map(|e| e.eval_rewards_margins),
                "eval_rewards_accuracies": report.eval.as_ref().map(|e| e.eval_rewards_accuracies),
            });
            Some(models::register(&store, Some(&id), &args.train.adapter_path, Some(&args.train.model), &eval)?.version)
        };
        let r = Registered { run: id.clone(), model_version: version };
        (id, report, Some(r))
    };
    if ctx.json {
        let mut v = serde_json::to_value(report.metrics.unwrap_or_default())?;
        if let (Some(obj), Some(e)) = (v.as_object_mut(), &report.eval) {
            if let Some(eo) = serde_json::to_value(e)?.as_object() {
                obj.extend(eo.clone());
            }
        }
        if let Some(obj) = v.as_object_mut() {
            obj.insert("run".into(), id.clone().into());
            obj.insert("reference".into(), report.reference_description.clone().into());
            // As `brain train --json` reports it: batches whose loss and gradient ran compiled.
            obj.insert("compiled_batches".into(), report.run.compiled_batches.into());
            obj.insert("bf16_matrices".into(), report.run.bf16_matrices.into());
            if let Some(r) = &registered {
                obj.insert("registered".into(), serde_json::to_value(r)?);
            }
        }
        print_json(&v)?;
    } else {
        println!("DPO run {id}: {} steps ({:?}); reference: {}", report.run.steps, report.run.stop, report.reference_description);
        if let Some(e) = &report.eval {
            println!("held-out: margin {:.4}, accuracy {:.2} over {} pairs", e.eval_rewards_margins, e.eval_rewards_accuracies, e.eval_pairs);
        }
        if let Some(r) = &registered {
            println!("{}", r.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registered run that wrote `reference` (the SFT adapter DPO starts from), if any.
fn reference_run(store: &Store, reference: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let Some(dir) = reference.and_then(|d| d.canonicalize().ok()) else { return Ok(None) };
    let runs = store.runs(&crate::store::runs::RunFilter { kind: Some("sft".into()), status: None, limit: 0 })?;
    Ok(runs.into_iter().find(|r| r.adapter.as_deref().and_then(|a| std::path::Path::new(a).canonicalize().ok()).is_some_and(|a| a == dir)).map(|r| r.id))
}
