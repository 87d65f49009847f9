//! `brain pipeline run [--force] [--dry-run]`: the whole path, unattended (cron-safe).

use std::process::ExitCode;

use super::{print_json, Ctx};
use crate::pipeline::{self, PipelineOptions};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Collect → curate → export → SFT → DPO → eval → register → promote.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Train even below `[pipeline] min_new_examples`.
    #[arg(long)]
    pub force: bool,
    /// Print what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these stages (comma-separated: collect, export, train, dpo, eval).
    #[arg(long, value_delimiter = ',')]
    pub stages: Option<Vec<String>>,
}

pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Run(a) = cmd;
    let config = ctx.config()?;
    let opts = PipelineOptions { force: a.force, dry_run: a.dry_run, progress: ctx.progress(), quiet: ctx.quiet || ctx.json, stages: a.stages };
    let report = pipeline::run(&config, &opts)?;
    if ctx.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
