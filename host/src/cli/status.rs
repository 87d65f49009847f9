//! `brain status`: what the store holds.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let store = ctx.open_store(&config)?;
    let status = store.status()?;
    if ctx.json {
        super::print_json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("store    {} ({})", status.store.path, human_bytes(status.store.bytes));
    println!("examples {}", status.total);
    if let Some(t) = &status.last_collected {
        println!("newest   {t}");
    }
    let table = |title: &str, map: &BTreeMap<String, u64>| {
        if map.is_empty() {
            return;
        }
        println!("\n{title}");
        let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        for (k, v) in map {
            println!("  {k:<width$}  {v:>8}");
        }
    };
    table("by source", &status.by_source);
    table("by kind", &status.by_kind);
    table("by status", &status.by_status);
    table("by task", &status.by_task);
    if status.near_duplicates > 0 || status.scored > 0 {
        println!("\nscored by filters {}, near duplicates {}", status.scored, status.near_duplicates);
    }
    if status.interactions.total > 0 {
        println!("\nserved {} requests, {} escalated to the teacher", status.interactions.total, status.interactions.escalated);
    }
    let unseen: Vec<&str> = config
        .sources
        .iter()
        .filter(|s| s.enabled && !status.checkpoints.contains_key(&s.name) && !status.by_source.contains_key(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    if !unseen.is_empty() {
        println!("\nnot collected yet: {} (run `brain collect`)", unseen.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
