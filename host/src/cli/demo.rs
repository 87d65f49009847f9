//! `brain demo [DIR]`: the whole path on embedded defaults (see [`crate::demo`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{print_json, Ctx};
use crate::demo::{self, DemoOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work directory (new or empty); default: the first free brain-demo[-N] here, or in
    /// ~/.local/share/sam-brain/demos when here is inside a git checkout.
    pub dir: Option<PathBuf>,
    /// Git repository to learn from (default: the one holding the working directory).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// SFT updates.
    #[arg(long)]
    pub iters: Option<usize>,
    /// With --tiny: full-training updates that give the random model some language first (0: none).
    #[arg(long)]
    pub pretrain_iters: Option<usize>,
    /// Train this model instead of SmolLM2-135M-Instruct: a Hugging Face directory, a .gguf
    /// file or ollama:NAME[:TAG].
    #[arg(long, conflicts_with = "tiny")]
    pub model: Option<PathBuf>,
    /// Train a tiny random model made on the spot (no download; fast, but it learns little).
    #[arg(long)]
    pub tiny: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let r = demo::run(&DemoOptions {
        dir: a.dir,
        repo: a.repo,
        iters: a.iters,
        pretrain_iters: a.pretrain_iters,
        model: a.model,
        tiny: a.tiny,
        quiet: ctx.quiet || ctx.json,
    })?;
    if ctx.json {
        let eval = r.second.steps.iter().find(|s| s.stage == "eval" && s.status == "done");
        let routing = eval.and_then(|e| e.data["candidate"].get("routing_accuracy").cloned()).unwrap_or(serde_json::Value::Null);
        let s = r.showcase.as_ref();
        print_json(&serde_json::json!({
            "dir": r.dir,
            "model": r.model,
            "test_loss_before": s.map(|s| s.test_loss_before),
            "test_loss_after": s.map(|s| s.test_loss_after),
            "test_tokens": s.map(|s| s.test_tokens),
            "answers": s.map(|s| &s.answers),
            "routing_accuracy": routing,
            "collect_export": r.first,
            "train": r.second,
        }))?;
    } else {
        print!("{}", r.text);
    }
    let ok = r.first.ok && r.second.ok && r.second.model_version.is_some();
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
