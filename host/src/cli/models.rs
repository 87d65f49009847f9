//! `brain models`: model versions (candidate → active → retired) with their evaluation numbers;
//! `promote ID`, `rollback`, `show ID`.

use std::process::ExitCode;

use super::runs::{num, short_time};
use super::Ctx;
use crate::registry::models;
use crate::store::models::ModelRecord;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a version active (the active one is retired; `rollback` returns to it).
    Promote {
        /// The version (`v3`).
        #[arg(value_name = "VERSION")]
        id: String,
        /// Why, for the history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Retire the active version and bring back the one it replaced.
    Rollback,
    /// One version: its evaluation and history.
    Show {
        #[arg(value_name = "VERSION")]
        id: String,
    },
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    match args.command {
        None => list(ctx, &store),
        Some(Command::Promote { id, reason }) => {
            let change = models::promote(&store, &id, reason.as_deref())?;
            report_change(ctx, &change, "promoted")
        }
        Some(Command::Rollback) => {
            let change = models::rollback(&store)?;
            report_change(ctx, &change, "rolled back")
        }
        Some(Command::Show { id: version }) => {
            let m = store.model(&version)?.ok_or_else(|| crate::registry::RegistryError::NoModel(version.clone()))?;
            let events = store.model_events(&version)?;
            if ctx.json {
                super::print_json(&serde_json::json!({"model": m, "events": events}))?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("version   {} ({})", m.version, m.status);
            if let Some(r) = &m.run_id {
                println!("run       {r}");
            }
            if let Some(a) = &m.adapter {
                println!("adapter   {a}");
            }
            if let Some(b) = &m.base_model {
                println!("base      {b}");
            }
            if let Some(p) = &m.previous {
                println!("replaced  {p}");
            }
            let nums = eval_numbers(&m.eval);
            if !nums.is_empty() {
                println!("eval      {}", nums.iter().map(|(k, v)| format!("{k} {}", num(*v))).collect::<Vec<_>>().join("  "));
            }
            if let Some(r) = &m.reason {
                println!("reason    {r}");
            }
            println!("\nhistory");
            for e in events {
                println!("  {}  {:<11} → {:<9} {}", short_time(&e.at), e.event, e.status.as_str(), e.reason.unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn report_change(ctx: &Ctx, change: &models::Change, what: &str) -> anyhow::Result<ExitCode> {
    if ctx.json {
        super::print_json(change)?;
    } else if !ctx.quiet {
        match &change.retired {
            Some(r) => println!("{what}: {} is active, {r} retired", change.active),
            None => println!("{what}: {} is active", change.active),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Numbers of an evaluation, flattened (`metrics.x` → `x`), well-known ones first.
pub fn eval_numbers(eval: &serde_json::Value) -> Vec<(String, f64)> {
    const ORDER: [&str; 6] = ["test_loss", "test_ppl", "routing_accuracy", "repetition_rate", "stop_rate", "score"];
    let mut out: Vec<(String, f64)> = Vec::new();
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        if let Some(o) = v.as_object() {
            for (k, x) in o {
                let name = if prefix.is_empty() || prefix == "metrics" { k.clone() } else { format!("{prefix}.{k}") };
                match x {
                    serde_json::Value::Number(n) => out.extend(n.as_f64().map(|f| (name, f))),
                    serde_json::Value::Object(_) => walk(&name, x, out),
                    _ => {}
                }
            }
        }
    }
    walk("", eval, &mut out);
    out.sort_by_key(|(k, _)| (ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()), k.clone()));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn list(ctx: &Ctx, store: &crate::store::Store) -> anyhow::Result<ExitCode> {
    let all = models::list(store)?;
    if ctx.json {
        super::print_json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no model versions yet (a finished training run is registered as a candidate)");
        return Ok(ExitCode::SUCCESS);
    }
    // The eval columns: the numbers most versions have, well-known first, at most four.
    let mut columns: Vec<String> = Vec::new();
    for m in &all {
        for (k, _) in eval_numbers(&m.eval) {
            if !columns.contains(&k) && columns.len() < 4 {
                columns.push(k);
            }
        }
    }
    let cell = |m: &ModelRecord, c: &str| eval_numbers(&m.eval).into_iter().find(|(k, _)| k == c).map(|(_, v)| num(v)).unwrap_or_else(|| "-".into());
    let mut header: Vec<String> = ["VERSION", "STATUS", "CREATED (UTC)", "RUN"].iter().map(|s| s.to_string()).collect();
    header.extend(columns.iter().map(|c| c.to_uppercase()));
    header.push("NOTE".into());
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            let mut r = vec![
                if m.status == crate::store::models::ModelStatus::Active { format!("{} *", m.version) } else { m.version.clone() },
                m.status.to_string(),
                short_time(&m.created_at),
                m.run_id.clone().unwrap_or_else(|| "-".into()),
            ];
            r.extend(columns.iter().map(|c| cell(m, c)));
            r.push(m.reason.clone().unwrap_or_default());
            r
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let print = |cells: &[String]| {
        let n = cells.len();
        let line: String = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i + 1 == n { c.clone() } else { format!("{c}{}", " ".repeat(w - c.chars().count() + 2)) })
            .collect();
        println!("{}", line.trim_end());
    };
    print(&header);
    for r in &rows {
        print(r);
    }
    Ok(ExitCode::SUCCESS)
}
