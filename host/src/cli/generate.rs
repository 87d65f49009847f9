//! `brain generate` (one reply, printed alone unless `--verbose` — the global `-v`) and `brain chat` (a REPL with
//! history). Flags follow mlx-lm's generate. Without `--model`, the active model version (base +
//! adapter) is used, so a rollback changes what these commands answer with.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use brain_train::generate::{GenerateArgs, Generator};
use brain_train::tokenizer::Message;

use super::{print_json, Ctx};
use crate::registry::models;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory (default: the active version's base model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Adapter directories (default: the active version's adapter). Several are fused in order.
    #[arg(long)]
    pub adapter_path: Vec<PathBuf>,
    /// Use the bare model even when a version is active.
    #[arg(long)]
    pub no_adapter: bool,
    /// The prompt (`-` reads stdin). Not used by `chat`.
    #[arg(long, short = 'p', default_value = "")]
    pub prompt: String,
    #[arg(long)]
    pub system_prompt: Option<String>,
    #[arg(long, short = 'm', default_value_t = 256)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Fills model and adapter from the active version when not given.
fn resolve(ctx: &Ctx, a: &Args) -> anyhow::Result<(GenerateArgs, Option<String>, Option<String>)> {
    let config = if ctx.config_path.exists() { Some(ctx.config()?) } else { None };
    let mut model = a.model.clone();
    let mut adapters = a.adapter_path.clone();
    let mut version = None;
    let mut system = a.system_prompt.clone();
    if let Some(config) = &config {
        if system.is_none() {
            system = config.pipeline.system_prompt.clone();
        }
        if adapters.is_empty() && !a.no_adapter {
            let store = ctx.open_store(config)?;
            if let Some(active) = models::active(&store)? {
                if model.is_none() {
                    model = active.base_model.as_ref().map(PathBuf::from);
                }
                if let Some(ad) = &active.adapter {
                    adapters.push(PathBuf::from(ad));
                }
                version = Some(active.version.clone());
            }
        }
        if model.is_none() {
            model = config.train.base_model.clone();
        }
    }
    let Some(model) = model else { bail!("no model: pass --model DIR, set [train] base_model, or promote a model version") };
    let prompt = if a.prompt == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading the prompt from stdin")?;
        s
    } else {
        a.prompt.clone()
    };
    let args = GenerateArgs {
        model,
        adapter_path: adapters,
        prompt,
        system_prompt: system.clone(),
        max_tokens: a.max_tokens,
        temp: a.temp,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        repetition_penalty: a.repetition_penalty,
        ..GenerateArgs::default()
    };
    Ok((args, version, system))
}

pub fn generate(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let (args, version, _) = resolve(ctx, &a)?;
    if args.prompt.is_empty() {
        bail!("no prompt: pass --prompt TEXT (or --prompt - to read stdin)");
    }
    let g = brain_train::generate::generate(&args)?;
    if ctx.json {
        let mut v = serde_json::to_value(&g)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("tokens");
            o.insert("model_version".into(), version.into());
        }
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if ctx.verbose > 0 {
        eprintln!("model {} adapters {:?} version {}", args.model.display(), args.adapter_path, version.as_deref().unwrap_or("-"));
        eprintln!("==========");
    }
    println!("{}", g.text);
    if ctx.verbose > 0 {
        eprintln!("==========");
        eprintln!(
            "prompt: {} tokens, {:.1} tokens/s; generation: {} tokens, {:.1} tokens/s; finish: {:?}; peak {:.2} GB",
            g.prompt_tokens, g.prompt_tps, g.generation_tokens, g.generation_tps, g.finish_reason, g.peak_memory
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The REPL: each line is a user turn; `/reset` clears history, `/quit` (or EOF) ends.
pub fn chat(ctx: &Ctx, a: Args) -> anyhow::Result<ExitCode> {
    let (args, version, system) = resolve(ctx, &a)?;
    let mut g = Generator::load(&args.model, &args.adapter_path, None)?;
    let opts = args.options();
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("brain chat — model {} (version {}); /reset clears history, /quit ends", args.model.display(), version.as_deref().unwrap_or("none"));
    }
    let mut history: Vec<Message> = system.iter().map(|s| Message::new("system", s)).collect();
    let base_len = history.len();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let line = line.trim();
        match line {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                history.truncate(base_len);
                g.reset();
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", line));
        let mut out = std::io::stdout();
        let reply = g.reply_stream(&history, &opts, &mut |t| {
            let _ = write!(out, "{t}");
            let _ = out.flush();
        })?;
        println!();
        history.push(Message::new("assistant", &reply.text));
    }
    Ok(ExitCode::SUCCESS)
}
