//! `brain export ollama NAME`: ship a model to Ollama. `brain export` with no subcommand is the
//! dataset snapshot export ([`super::export`]); this wraps its arguments so both live under one
//! command (`brain export [--out DIR]` and `brain export ollama NAME [...]`).

use std::path::PathBuf;
use std::process::ExitCode;

use super::Ctx;
use crate::ship::export::{export_ollama, OllamaOptions, Source};

/// `brain export`: the snapshot export's arguments, or a shipping target.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: Option<ExportTarget>,
    #[command(flatten)]
    pub snapshot: super::export::Args,
}

#[derive(Debug, clap::Subcommand)]
pub enum ExportTarget {
    /// Write an Ollama Modelfile (a GGUF file, fused safetensors, or base + adapter) whose
    /// TEMPLATE and stops come from the model's chat template (ChatML or Llama 3), and run
    /// `ollama create` when Ollama is installed (else print the command).
    Ollama(OllamaArgs),
}

#[derive(Debug, clap::Args)]
pub struct OllamaArgs {
    /// The Ollama model name (default: [pipeline] ollama_model).
    pub name: Option<String>,
    /// An already fused model directory.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["adapter", "model_version"])]
    pub fused: Option<PathBuf>,
    /// Keep this adapter separate: FROM the base + ADAPTER (PEFT layout). Ollama imports such
    /// adapters for llama and gemma2 models only; the default fuses instead.
    #[arg(long, value_name = "DIR", conflicts_with = "model_version")]
    pub adapter: Option<PathBuf>,
    /// The base model directory (default: the version's, else [train] base_model).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// A registered model version to ship (default: the active one).
    #[arg(long, value_name = "VERSION")]
    pub model_version: Option<String>,
    /// Directory for the Modelfile and weights (default: ollama/NAME beside the config).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The system prompt (default: [pipeline] system_prompt, else the template's default).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature (a PARAMETER of the Modelfile).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Quantize while creating (`ollama create --quantize`, e.g. q4_K_M).
    #[arg(long)]
    pub quantize: Option<String>,
    /// Only write the files and print the `ollama create` command.
    #[arg(long)]
    pub no_create: bool,
    /// Build the Ollama model from one GGUF file (f16, q8_0 or q4_0; default f16) written beside
    /// the Modelfile (`FROM ./ggml-model-<type>.gguf`). f16 keeps the fused weights as they are,
    /// and is what `--quantize` (Ollama's own quantizer) needs as its source. Without this flag a
    /// GGUF file already in the --fused directory is used.
    #[arg(long, value_name = "TYPE", num_args = 0..=1, default_missing_value = "f16", conflicts_with_all = ["adapter", "safetensors"])]
    pub gguf: Option<String>,
    /// Build from the fused safetensors directory (Ollama converts it) even when a GGUF file is there.
    #[arg(long)]
    pub safetensors: bool,
}

pub fn run_export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    match args.target {
        Some(ExportTarget::Ollama(a)) => run_ollama(ctx, a),
        None => super::export::run(ctx, args.snapshot),
    }
}

pub fn run_ollama(ctx: &Ctx, args: OllamaArgs) -> anyhow::Result<ExitCode> {
    let config = ctx.config()?;
    let name = args
        .name
        .clone()
        .or_else(|| config.pipeline.ollama_model.clone())
        .ok_or_else(|| anyhow::anyhow!("no model name: `brain export ollama NAME`, or set [pipeline] ollama_model"))?;
    let source = match &args.fused {
        Some(dir) => Source::Fused(dir.clone()),
        None => {
            let store = ctx.open_store(&config)?;
            let keep_adapter = args.adapter.is_some();
            let (adapter, base, _) = super::fuse::resolve_adapter(&config, &store, args.adapter.clone(), args.model_version.as_deref(), args.base.clone())?;
            if keep_adapter {
                Source::AdapterOnBase { adapter, base }
            } else {
                Source::FuseFirst { adapter, base }
            }
        }
    };
    // Checked before fusing: a bad type should not cost a fuse.
    let gguf: Option<brain_train::gguf::export::GgufType> = args.gguf.as_deref().map(str::parse).transpose()?;
    let opts = OllamaOptions {
        name: name.clone(),
        source,
        out_dir: args.out.unwrap_or_else(|| config.dir.join("ollama").join(&name)),
        system_prompt: args.system.or_else(|| config.pipeline.system_prompt.clone()),
        temperature: args.temperature,
        quantize: args.quantize,
        create: !args.no_create,
        gguf,
        safetensors: args.safetensors,
    };
    let report = export_ollama(&opts)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        super::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &report.fused {
        println!("fused {} layers into {}", f.fused, f.save_path.display());
    }
    if let Some(g) = &report.gguf_export {
        println!("GGUF ({}, {:.1} MB): {}", g.gguf_type.name(), g.bytes as f64 / 1e6, g.path.display());
    }
    println!(
        "Modelfile {} ({} layout, {} template checked on {} conversations against training)",
        report.modelfile.display(),
        report.layout,
        report.family,
        report.template.conversations
    );
    if report.created {
        println!("created Ollama model {name}: ollama run {name}");
    } else {
        println!("to create the Ollama model, run:\n  {}", report.command);
    }
    Ok(ExitCode::SUCCESS)
}
