//! `brain demo`: the whole path on embedded defaults, in a new directory — collect this
//! repository's git history and docs plus a bundled sample transcript and interaction log, scrub,
//! filter, auto-review, export, make a tiny model (its tokenizer trained on the exported text,
//! its weights pretrained briefly on plain text), SFT, DPO, evaluate, register and promote — then
//! print a short report.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use brain_train::fuse::{fuse, FuseArgs};
use brain_train::tiny::{init_tiny, TinySpec};
use brain_train::{FineTuneType, RunSummary, TrainArgs};

use crate::config::Config;
use crate::pipeline::{self, PipelineOptions, PipelineReport};
use crate::store::Store;

/// The bundled sample transcripts (file name, content): written into the demo directory.
const SAMPLE_SESSIONS: [(&str, &str); 2] = [
    (
        "5d0c8e2a-7b1f-4c3e-9a61-2f4d8b9e0c11.jsonl",
        include_str!("../../samples/claude-projects/-home-demo-todo-app/5d0c8e2a-7b1f-4c3e-9a61-2f4d8b9e0c11.jsonl"),
    ),
    (
        "9b7e4c1d-2a3f-4e5b-8c6d-0f1e2d3c4b5a.jsonl",
        include_str!("../../samples/claude-projects/-home-demo-todo-app/9b7e4c1d-2a3f-4e5b-8c6d-0f1e2d3c4b5a.jsonl"),
    ),
];
const SAMPLE_ROUTING: &str = include_str!("../../samples/routing/interactions.jsonl");

#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Where to work (must not exist, or be empty); default: the first free `brain-demo[-N]`.
    pub dir: Option<PathBuf>,
    /// The git repository to learn from; default: the one holding the working directory.
    pub repo: Option<PathBuf>,
    /// SFT updates (default 150).
    pub iters: Option<usize>,
    /// Full-training updates that give the tiny random model some language before SFT
    /// (default 200; 0: SFT starts from random weights).
    pub pretrain_iters: Option<usize>,
    pub quiet: bool,
}

/// The first `brain-demo`, `brain-demo-2`, … that does not exist yet.
fn fresh_dir() -> PathBuf {
    let mut n = 1;
    loop {
        let name = if n == 1 { "brain-demo".to_string() } else { format!("brain-demo-{n}") };
        let p = PathBuf::from(name);
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

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// The demo's brain.toml: four sources, three filters, and settings sized for 2 CPU cores.
fn demo_config(repo: &Path, samples: &Path, iters: usize) -> String {
    let repo = toml_str(repo);
    let claude = toml_str(&samples.join("claude-projects"));
    let routing = toml_str(&samples.join("routing"));
    format!(
        r#"# Written by `brain demo`. Edit and re-run `brain pipeline run --config brain.toml`.
[store]
path = "brain.db"

[[source]]
name = "repo-commits"
plugin = "git"
grants = {{ git = [{repo}] }}
config = {{ repos = [{repo}], max_diff_bytes = 600 }}

[[source]]
name = "repo-docs"
plugin = "docs"
grants = {{ read = [{repo}] }}
config = {{ dirs = [{repo}], project = "SAM Brain" }}

[[source]]
name = "sample-transcripts"
plugin = "claude-logs"
grants = {{ read = [{claude}] }}

[[source]]
name = "sample-routing"
plugin = "routing"
grants = {{ read = [{routing}] }}

[[filter]]
name = "quality"
plugin = "quality"
config = {{ reject_below = 0.15 }}

[[filter]]
name = "repetition"
plugin = "repetition"

[[filter]]
name = "length"
plugin = "length"

[review]
approve_above = 0.4
reject_below = 0.15

[export]
out = "exports"
ratios = {{ train = 0.8, valid = 0.1, test = 0.1 }}

[train]
base_model = "model"
iters = {iters}
batch_size = 4
learning_rate = 3e-3
warmup = 10
num_layers = 2
max_seq_length = 768
steps_per_report = 10
steps_per_eval = 20
val_batches = 4
save_every = 20
runs_dir = "runs"
lora = {{ rank = 16, scale = 2.0, dropout = 0.0, keys = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"] }}

[dpo]
iters = 10
batch_size = 1
learning_rate = 5e-4
num_layers = 2
max_seq_length = 768
steps_per_eval = 5
lora = {{ rank = 8, scale = 2.0, dropout = 0.0 }}

[eval]
max_examples = 6
max_tokens = 24

[pipeline]
min_new_examples = 1
min_new_pairs = 1
auto_promote = true
"#
    )
}

/// The text of the exported conversations of one split (what the tiny tokenizer and the
/// pretraining learn from; never the test split, which evaluation scores).
fn export_text(snapshot_dir: &Path, split: &str) -> String {
    let mut text = String::new();
    let Ok(body) = std::fs::read_to_string(snapshot_dir.join("chat").join(format!("{split}.jsonl"))) else { return text };
    for line in body.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        for m in v["messages"].as_array().into_iter().flatten() {
            if let Some(c) = m["content"].as_str() {
                text.push_str(c);
                text.push('\n');
            }
        }
    }
    text
}

/// Gives the random model in `init` some language and writes the result to `model`: `iters`
/// full-training updates on `text` cut into ~700-character pieces (~250 tokens; every 20th held
/// out), then the trained weights fused into a new model directory. A random model knows
/// nothing, so LoRA on it only learns token frequencies; after this SFT adapts a model that
/// predicts text, as it would a real base model.
fn pretrain(work: &Path, init: &Path, model: &Path, text: &str, iters: usize, quiet: bool) -> anyhow::Result<RunSummary> {
    let data = work.join("data");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut pieces = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if pieces.last().is_some_and(|p| !p.is_empty() && p.len() + line.len() > 700) {
            pieces.push(String::new());
        }
        pieces.last_mut().expect("never empty").push_str(line);
    }
    let (mut train, mut valid) = (String::new(), String::new());
    for (i, piece) in pieces.iter().filter(|p| !p.trim().is_empty()).enumerate() {
        let out = if i % 20 == 19 { &mut valid } else { &mut train };
        out.push_str(&serde_json::json!({ "text": piece }).to_string());
        out.push('\n');
    }
    for (name, body) in [("train.jsonl", &train), ("valid.jsonl", &valid)] {
        let path = data.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    let args = TrainArgs {
        model: init.to_path_buf(),
        data,
        adapter_path: work.join("run"),
        fine_tune_type: FineTuneType::Full,
        iters,
        batch_size: 8,
        learning_rate: 1e-2,
        num_layers: -1,
        max_seq_length: 256,
        steps_per_report: 25,
        steps_per_eval: iters.max(1),
        val_batches: 0,
        steps_per_save: iters.max(1),
        seed: 7,
        ..TrainArgs::default()
    };
    let report = brain_train::train(&args, &mut |p| {
        if !quiet && p.event == brain_train::Event::Train {
            eprintln!("  pretrain [{}/{}] loss {:.4} {:.0} tok/s", p.step, p.iters, p.train_loss.unwrap_or(f32::NAN), p.tokens_per_second);
        }
    })
    .context("pretraining the tiny model")?;
    let save_path = model.to_path_buf();
    fuse(&FuseArgs { model: init.to_path_buf(), adapter_path: args.adapter_path.clone(), save_path, dequantize: false, dtype: None, overwrite: false })
        .context("writing the pretrained tiny model")?;
    Ok(report.run)
}

pub struct DemoReport {
    pub dir: PathBuf,
    pub first: PipelineReport,
    pub second: PipelineReport,
    /// The tiny base's pretraining, when it had one.
    pub pretrain: Option<RunSummary>,
    pub text: String,
}

pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoReport> {
    let dir = opts.dir.clone().unwrap_or_else(fresh_dir);
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty: pass another directory (`brain demo DIR`)", dir.display());
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
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
    let config_path = dir.join("brain.toml");
    std::fs::write(&config_path, demo_config(&repo, &samples, opts.iters.unwrap_or(150)))?;
    let config = Config::load(&config_path)?;
    let say = |s: &str| {
        if !opts.quiet {
            eprintln!("demo: {s}");
        }
    };

    say(&format!("collecting from {} (git history, docs) and the bundled samples", repo.display()));
    let first = pipeline::run(
        &config,
        &PipelineOptions { force: true, quiet: opts.quiet, stages: Some(vec!["collect".into(), "export".into()]), ..Default::default() },
    )?;
    let snapshot = first.snapshot_dir.clone().context("the export stage wrote no snapshot")?;

    say("making a tiny Qwen2 model; its tokenizer is trained on the exported text");
    // Untied head: a tied random embedding makes the untrained model predict its input token
    // (logits ~2·sqrt(hidden)), which LoRA spends the whole demo unlearning.
    let spec = TinySpec {
        hidden: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        intermediate: 256,
        tokenizer_vocab: 1024,
        tie_word_embeddings: false,
        seed: 7,
        ..TinySpec::default()
    };
    let model = config.train.base_model.clone().context("demo config has a base model")?;
    let (train_text, valid_text) = (export_text(&snapshot, "train"), export_text(&snapshot, "valid"));
    let corpus = format!("{train_text}{valid_text}{}", brain_train::tiny::BUILTIN_CORPUS);
    let pretrain_iters = opts.pretrain_iters.unwrap_or(200);
    let pretrained = if pretrain_iters == 0 {
        init_tiny(&model, &spec, Some(&corpus))?;
        None
    } else {
        let init = dir.join("pretrain").join("random-model");
        init_tiny(&init, &spec, Some(&corpus))?;
        say(&format!("pretraining it: {pretrain_iters} full-training updates on plain text (the exported train split and a built-in corpus)"));
        let text = train_text + brain_train::tiny::BUILTIN_CORPUS;
        Some(pretrain(&dir.join("pretrain"), &init, &model, &text, pretrain_iters, opts.quiet)?)
    };

    say("training: SFT, then DPO on the preference pairs, then evaluation and promotion");
    let second = pipeline::run(
        &config,
        &PipelineOptions { force: true, quiet: opts.quiet, stages: Some(vec!["train".into(), "dpo".into(), "eval".into()]), ..Default::default() },
    )?;
    let store = Store::open(&config.store_path)?;
    let text = render(&dir, &config, &store, &first, &second, pretrained.as_ref())?;
    Ok(DemoReport { dir, first, second, pretrain: pretrained, text })
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
