//! `brain collect [--source NAME]`: run the source plugins, store what they emit, print the
//! per-source counters.

use std::process::ExitCode;

use super::Ctx;
use crate::collect::{collect, CollectOptions, CollectReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Collect only this source (also when it is disabled).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = ctx.open_store(&config)?;
    let host = ctx.plugin_host(&config)?;
    let opts = CollectOptions { source: args.source, progress: ctx.progress() };
    let mut curation = crate::curation::Curation::new(&config, &host)?;
    let report = collect(&config, &host, &mut store, &mut curation, &opts)?;
    curation.finish(&store)?;
    if config.sources.is_empty() {
        eprintln!("warning: {} has no [[source]]; nothing to collect", config.path.display());
    }
    if ctx.json {
        super::print_json(&report)?;
    } else if !ctx.quiet {
        print_table(&report);
    }
    for c in report.sources.iter().filter(|c| c.failed()) {
        eprintln!("error: source {:?} (plugin {}) failed: {}", c.name, c.plugin, c.error.as_deref().unwrap_or_default());
    }
    if report.ok() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} of {} sources failed ({}); what the others collected is stored",
            report.failed.len(),
            report.sources.len(),
            report.failed.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

fn print_table(report: &CollectReport) {
    if report.sources.is_empty() {
        return;
    }
    let width = report.sources.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).max(6);
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>8}",
        "source", "received", "stored", "duplicate", "discarded", "errors", "seconds"
    );
    for c in &report.sources {
        println!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}  {:>8.2}",
            c.name,
            c.received,
            c.stored,
            c.duplicate,
            c.discarded.values().sum::<u64>(),
            c.errors,
            c.seconds
        );
        for (what, map) in [("discarded", &c.discarded), ("curation", &c.curation)] {
            if !map.is_empty() {
                let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!("{:<width$}    {what}: {}", "", parts.join(", "));
            }
        }
        if c.llm.calls > 0 {
            let l = &c.llm;
            println!("{:<width$}    llm: {} calls, {} tokens ({} prompt, {} completion)", "", l.calls, l.tokens(), l.prompt_tokens, l.completion_tokens);
        }
    }
    println!("{} new examples in {:.2} s", report.stored, report.seconds);
}
