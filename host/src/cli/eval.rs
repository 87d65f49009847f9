//! `brain eval`: perplexity, routing accuracy, repetition and stop rates (and the quality
//! filter's mean score of generations) on a test split, stored with the model version;
//! `--compare A B` prints two versions' numbers side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};

use super::{print_json, Ctx};
use crate::pipeline::eval_args_from_config;
use crate::registry::models;
use crate::training::{self, eval_summary, Lineage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapter directory; default: the given --model-version's, else the active version's.
    #[arg(long)]
    pub adapter_path: Option<PathBuf>,
    /// Evaluate this registered version (and store the result with it).
    #[arg(long)]
    pub model_version: Option<String>,
    /// Test data: a test.jsonl or a directory holding one (default: [eval] data, else the
    /// latest snapshot's chat/).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub max_examples: Option<usize>,
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Print two versions' stored evaluations side by side.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<String>>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    if let Some(pair) = &a.compare {
        return compare(ctx, &store, &pair[0], &pair[1]);
    }
    let all = models::list(&store)?;
    let version = match &a.model_version {
        Some(v) => Some(all.iter().find(|m| &m.version == v).cloned().with_context(|| format!("no model version {v:?} (see `brain models`)"))?),
        None if a.adapter_path.is_none() => models::active(&store)?,
        None => None,
    };
    let model = a
        .model
        .clone()
        .or_else(|| version.as_ref().and_then(|v| v.base_model.as_ref().map(PathBuf::from)))
        .or_else(|| config.train.base_model.clone());
    let Some(model) = model else { bail!("no model: pass --model DIR or set [train] base_model") };
    let data = match a.data.clone().or_else(|| config.eval.data.clone()) {
        Some(d) => d,
        None => match store.latest_snapshot()? {
            Some(s) => PathBuf::from(s.dir).join("chat"),
            None => bail!("no test data: pass --data, set [eval] data, or run `brain export`"),
        },
    };
    let mut args = eval_args_from_config(&config, model, data);
    if let Some(ad) = a.adapter_path.clone().or_else(|| version.as_ref().and_then(|v| v.adapter.as_ref().map(PathBuf::from))) {
        args.adapter_path = vec![ad];
    }
    if let Some(n) = a.max_examples {
        args.max_examples = n;
    }
    if let Some(n) = a.max_tokens {
        args.max_tokens = n;
    }
    let (run_id, report) = training::eval(&store, &args, &Lineage::default(), None)?;
    let summary = eval_summary(&report);
    if let Some(v) = &version {
        store.set_model_eval(&v.version, &summary)?;
    }
    if ctx.json {
        let mut r = serde_json::to_value(&report)?;
        if let Some(o) = r.as_object_mut() {
            o.remove("samples");
            o.insert("run".into(), run_id.into());
            o.insert("model_version".into(), version.map(|v| v.version).into());
        }
        print_json(&r)?;
    } else {
        println!("{}", table(&[("value", &summary)]));
    }
    Ok(ExitCode::SUCCESS)
}

const METRICS: [&str; 6] = ["test_loss", "perplexity", "routing_accuracy", "repetition_rate", "stop_rate", "mean_score"];

fn table(cols: &[(&str, &serde_json::Value)]) -> String {
    let mut out = format!("{:<18}", "metric");
    for (name, _) in cols {
        out.push_str(&format!("{name:>12}"));
    }
    out.push('\n');
    for m in METRICS {
        out.push_str(&format!("{m:<18}"));
        for (_, v) in cols {
            let cell = v.get(m).and_then(|x| x.as_f64()).map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
            out.push_str(&format!("{cell:>12}"));
        }
        out.push('\n');
    }
    out
}

fn compare(ctx: &Ctx, store: &crate::store::Store, a: &str, b: &str) -> anyhow::Result<ExitCode> {
    let all = models::list(store)?;
    let find = |v: &str| all.iter().find(|m| m.version == v).cloned().with_context(|| format!("no model version {v:?} (see `brain models`)"));
    let (ma, mb) = (find(a)?, find(b)?);
    if ctx.json {
        print_json(&serde_json::json!({ a: ma.eval, b: mb.eval }))?;
    } else {
        print!("{}", table(&[(a, &ma.eval), (b, &mb.eval)]));
    }
    Ok(ExitCode::SUCCESS)
}
