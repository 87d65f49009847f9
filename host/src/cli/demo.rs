//! `brain demo [DIR]`: the whole path on embedded defaults (see [`crate::demo`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{print_json, Ctx};
use crate::demo::{self, DemoOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work directory (new or empty); default: the first free ./brain-demo[-N].
    pub dir: Option<PathBuf>,
    /// Git repository to learn from (default: the one holding the working directory).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// SFT updates.
    #[arg(long)]
    pub iters: Option<usize>,
    /// Full-training updates that give the tiny random model some language first (0: none).
    #[arg(long)]
    pub pretrain_iters: Option<usize>,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let r = demo::run(&DemoOptions { dir: a.dir, repo: a.repo, iters: a.iters, pretrain_iters: a.pretrain_iters, quiet: ctx.quiet || ctx.json })?;
    if ctx.json {
        print_json(&serde_json::json!({"dir": r.dir, "collect_export": r.first, "train": r.second}))?;
    } else {
        print!("{}", r.text);
    }
    let ok = r.first.ok && r.second.ok && r.second.model_version.is_some();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
