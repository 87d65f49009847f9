//! `brain train`: LoRA / full SFT on a dataset directory, or `--test` to score a test split.
//!
//! Values come from `[train]` in brain.toml; flags override them and follow mlx-lm's names
//! (`--model`, `--data`, `--iters`, …) so mlx-lm users feel at home.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use brain_train::{FineTuneType, Progress, TrainArgs};

use super::{print_json, Ctx};
use crate::config::{Config, TrainSection};
use crate::registry::models;
use crate::store::Store;
use crate::training::{self, Lineage};

/// The flags `brain train` and `brain dpo` share (mlx-lm's names).
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    /// Base model directory (Hugging Face or mlx-community layout).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset directory: train.jsonl / valid.jsonl (/ test.jsonl), e.g. an export's chat/ or
    /// preference/.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory: adapters, checkpoints and metrics go here.
    #[arg(long)]
    pub adapter_path: Option<PathBuf>,
    #[arg(long)]
    pub iters: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// Layers, counted from the last, that get adapters (-1: all).
    #[arg(long, allow_hyphen_values = true)]
    pub num_layers: Option<i32>,
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Compile each update (MLX's compile: fused kernels, the graph traced once per batch length,
    /// batches padded to a multiple of 32 tokens). The default on a GPU.
    #[arg(long, conflicts_with = "no_compile")]
    pub compile: bool,
    /// Do not compile, even on a GPU.
    #[arg(long)]
    pub no_compile: bool,
    /// On the CPU, multiply the frozen weights in bf16 (AVX-512 BF16: activations rounded to
    /// bf16 in the products, sums in f32; about twice the f32 rate). The default for models
    /// stored in bf16 on CPUs that have the instructions.
    #[arg(long, conflicts_with = "no_bf16_matmul")]
    pub bf16_matmul: bool,
    /// Multiply in f32 (exact for the stored weights), even a model stored in bf16.
    #[arg(long)]
    pub no_bf16_matmul: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from the newest checkpoint in --adapter-path.
    #[arg(long)]
    pub resume: bool,
    /// Smoke run: 10 updates.
    #[arg(long)]
    pub quick: bool,
    /// A scratch run: record no run and no model version in the store.
    #[arg(long)]
    pub no_register: bool,
}

impl RunFlags {
    /// Sets what was given, except the three paths (each command has its own fallbacks).
    pub fn apply(&self, a: &mut TrainArgs) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { a.$field = v; } )* };
        }
        set!(iters, batch_size, learning_rate, num_layers, max_seq_length, seed);
        a.grad_checkpoint |= self.grad_checkpoint;
        if self.compile || self.no_compile {
            a.compile = Some(self.compile);
        }
        if self.bf16_matmul || self.no_bf16_matmul {
            a.bf16_matmul = Some(self.bf16_matmul);
        }
        a.resume |= self.resume;
        a.quick |= self.quick;
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlags,
    #[arg(long, value_parser = ["lora", "full"])]
    pub fine_tune_type: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub grad_accumulation_steps: Option<usize>,
    /// Do not train: report test loss and perplexity on DATA/test.jsonl.
    #[arg(long)]
    pub test: bool,
    #[arg(long)]
    pub steps_per_eval: Option<usize>,
    #[arg(long)]
    pub steps_per_report: Option<usize>,
    #[arg(long)]
    pub save_every: Option<usize>,
}

/// Training arguments from `[train]` (paths already resolved by the config loader).
pub fn args_from_config(config: &Config) -> TrainArgs {
    let t: &TrainSection = &config.train;
    let mut a = TrainArgs::default();
    if let Some(m) = &t.base_model {
        a.model = m.clone();
    }
    if let Some(d) = &t.data {
        a.data = d.clone();
    }
    a.adapter_path = t.adapter_path.clone();
    a.fine_tune_type = if t.fine_tune_type == "full" { FineTuneType::Full } else { FineTuneType::Lora };
    a.iters = t.iters as usize;
    a.batch_size = t.batch_size as usize;
    a.learning_rate = t.learning_rate as f32;
    a.warmup = t.warmup as usize;
    a.num_layers = t.num_layers as i32;
    a.max_seq_length = t.max_seq_length as usize;
    a.grad_accumulation_steps = t.grad_accumulation.max(1) as usize;
    a.grad_checkpoint = t.grad_checkpoint;
    a.compile = t.compile;
    a.bf16_matmul = t.bf16_matmul;
    a.steps_per_report = t.steps_per_report.max(1) as usize;
    a.steps_per_eval = t.steps_per_eval.max(1) as usize;
    a.val_batches = t.val_batches as usize;
    a.steps_per_save = t.save_every.max(1) as usize;
    a.patience = (t.early_stopping_patience > 0).then_some(t.early_stopping_patience as usize);
    a.seed = t.seed;
    a.memory_limit = t.memory_limit_gb.map(|g| (g * 1e9) as usize);
    a.lora.rank = t.lora.rank as usize;
    a.lora.scale = t.lora.scale as f32;
    a.lora.dropout = t.lora.dropout as f32;
    if !t.lora.keys.is_empty() {
        a.lora.keys = t.lora.keys.clone();
    }
    a
}

fn apply_flags(a: &mut TrainArgs, f: &Args) {
    f.run.apply(a);
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = f.run.$field.clone() { a.$field = v; } )* };
    }
    set!(model, data, adapter_path);
    if let Some(g) = f.grad_accumulation_steps {
        a.grad_accumulation_steps = g;
    }
    if let Some(s) = f.steps_per_eval {
        a.steps_per_eval = s;
    }
    if let Some(s) = f.steps_per_report {
        a.steps_per_report = s;
    }
    if let Some(s) = f.save_every {
        a.steps_per_save = s;
    }
    if let Some(e) = f.epochs {
        a.epochs = Some(e);
    }
    if let Some(t) = &f.fine_tune_type {
        a.fine_tune_type = if t == "full" { FineTuneType::Full } else { FineTuneType::Lora };
    }
}

/// The config when there is one; flags alone suffice without it.
fn config_if_any(ctx: &Ctx) -> anyhow::Result<Option<Config>> {
    if ctx.config_path.exists() {
        ctx.config().map(Some)
    } else {
        Ok(None)
    }
}

pub fn run(ctx: &Ctx, flags: Args) -> anyhow::Result<ExitCode> {
    let config = config_if_any(ctx)?;
    let mut args = config.as_ref().map(args_from_config).unwrap_or_default();
    apply_flags(&mut args, &flags);
    if args.model.as_os_str().is_empty() {
        bail!("no model: pass --model DIR or set [train] base_model in {}", ctx.config_path.display());
    }
    if flags.test {
        let report = brain_train::evaluate_test(&args.test_args())?;
        if ctx.json {
            print_json(&report)?;
        } else {
            println!("test loss {:.4}, test ppl {:.3} ({} tokens)", report.test_loss, report.test_ppl, report.tokens);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // In a group of ranks (`brain launch`), rank 0 records the run; the others only train.
    let main = brain_train::distributed::world()?.is_main();
    let (registered, report) = if flags.run.no_register || !main {
        (None, train_with_progress(ctx, &mut args, None)?.1)
    } else {
        let config = match config {
            Some(c) => c,
            None => Config::from_str("", &ctx.config_path)?,
        };
        let store = ctx.open_store(&config)?;
        let lineage = training::cli_lineage(&store, "sft", &args.data, &args.adapter_path, args.resume)?;
        let (id, report) = train_with_progress(ctx, &mut args, Some((&store, &lineage)))?;
        (Some(register(&store, &id, &args, &report)?), report)
    };
    if ctx.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(obj), Some(r)) = (v.as_object_mut(), &registered) {
            obj.insert("registered".into(), serde_json::to_value(r)?);
        }
        print_json(&v)?;
    } else {
        println!(
            "trained {} steps ({:?}): train loss {}, best val loss {} at step {}; {:.0} tokens/s, peak {:.2} GB\nadapter: {}",
            report.run.steps,
            report.run.stop,
            fmt_opt(report.run.final_train_loss),
            fmt_opt(report.run.best_val_loss),
            report.run.best_step.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            report.run.tokens_per_second,
            report.run.peak_memory_gb,
            report.run.adapter_file.display()
        );
        if let Some(r) = &registered {
            println!("{}", r.line());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a training command recorded: its run and the model version of its adapter.
#[derive(Debug, serde::Serialize)]
pub struct Registered {
    pub run: String,
    /// None when the run stopped without a finished adapter (Ctrl-C: `--resume` continues).
    pub model_version: Option<String>,
}

impl Registered {
    pub fn line(&self) -> String {
        match &self.model_version {
            Some(v) => format!("run {} registered as model {v} (candidate; `brain models promote {v}` makes it active)", self.run),
            None => format!("run {} recorded as interrupted; no model version (`--resume` continues it)", self.run),
        }
    }
}

/// Registers the adapter of a finished run as a candidate model version. Its eval numbers are
/// the run's best validation loss and, when DATA/test.jsonl exists, the test loss.
fn register(store: &Store, run: &str, args: &TrainArgs, report: &brain_train::TrainReport) -> anyhow::Result<Registered> {
    if report.run.stop == brain_train::StopReason::Cancelled {
        return Ok(Registered { run: run.into(), model_version: None });
    }
    let mut eval = serde_json::json!({ "val_loss": report.run.best_val_loss });
    if args.data.join("test.jsonl").exists() {
        let test = brain_train::evaluate_test(&args.test_args()).with_context(|| format!("scoring {}", args.data.join("test.jsonl").display()))?;
        eval["test_loss"] = test.test_loss.into();
        eval["perplexity"] = test.test_ppl.into();
    }
    let v = models::register(store, Some(run), &args.adapter_path, Some(&args.model), &eval)?;
    Ok(Registered { run: run.into(), model_version: Some(v.version) })
}

fn fmt_opt(v: Option<f32>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

/// Runs training with a progress bar (when a person watches) and log lines otherwise.
/// Ctrl-C stops after the current update with a checkpoint saved (`--resume` continues).
/// With `record`, the run is recorded in the store (its id is returned; empty without).
pub fn train_with_progress(
    ctx: &Ctx,
    args: &mut TrainArgs,
    record: Option<(&Store, &Lineage)>,
) -> anyhow::Result<(String, brain_train::TrainReport)> {
    let cancel = Arc::new(AtomicBool::new(false));
    args.cancel = Some(cancel.clone());
    let _ = ctrlc_flag(cancel);
    let iters = if args.quick { 10 } else { args.iters } as u64;
    let bar = progress_bar(ctx, iters);
    let quiet = ctx.quiet || ctx.json;
    let mut on_progress = |p: &Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.iters as u64);
            bar.set_position(p.step as u64);
            bar.set_message(progress_line(p));
        } else if !quiet {
            eprintln!("[{}/{}] {}", p.step, p.iters, progress_line(p));
        }
    };
    let result = match record {
        Some((store, lineage)) => training::sft(store, args, lineage, &mut on_progress),
        None => brain_train::train(args, &mut on_progress).map(|r| (String::new(), r)).with_context(|| format!("training on {}", args.data.display())),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    result
}

fn progress_line(p: &Progress) -> String {
    let mut s = String::new();
    if let Some(l) = p.train_loss {
        s.push_str(&format!("loss {l:.4} "));
    }
    if let Some(l) = p.val_loss {
        s.push_str(&format!("val {l:.4} "));
    }
    s.push_str(&format!("lr {:.2e} {:.0} tok/s peak {:.2} GB", p.learning_rate, p.tokens_per_second, p.peak_memory_gb));
    s
}

pub fn progress_bar(ctx: &Ctx, len: u64) -> Option<indicatif::ProgressBar> {
    if !ctx.progress() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Installs a SIGINT handler that raises `flag` (first Ctrl-C); a second Ctrl-C kills.
fn ctrlc_flag(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("stopping after this update (checkpoint kept; --resume continues); Ctrl-C again to abort");
    })
    .map_err(|e| anyhow::anyhow!("cannot install the Ctrl-C handler: {e}"))
}
