//! `brain model info MODEL`: what a model is (architecture, size, quantization, template origin);
//! `brain model init-tiny DIR`: a small random Qwen2 model with a trained byte-level BPE
//! tokenizer, in Hugging Face layout — for tests, the demo and benchmarks (no model hub needed).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use brain_train::tiny::{init_tiny, TinySpec};

use super::{print_json, Ctx};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Describe a model: a Hugging Face / mlx-community directory, a .gguf file or ollama:NAME[:TAG].
    Info(Info),
    /// Write a random tiny Qwen2 model (config.json, model.safetensors, tokenizer files).
    InitTiny(InitTiny),
}

#[derive(Debug, clap::Args)]
pub struct Info {
    /// The model: a directory, a .gguf file or ollama:NAME[:TAG].
    pub model: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InitTiny {
    /// Output directory (created).
    pub dir: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub hidden: usize,
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 2)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = 128)]
    pub intermediate: usize,
    /// Embedding rows; 0: the tokenizer's size rounded up (151936 gives a Qwen-size head).
    #[arg(long, default_value_t = 0)]
    pub vocab: usize,
    /// Target size of the BPE tokenizer.
    #[arg(long, default_value_t = 512)]
    pub tokenizer_vocab: usize,
    /// Text file to train the tokenizer on (default: a built-in corpus).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Dtype the weights are stored in.
    #[arg(long, default_value = "float32", value_parser = ["float32", "bfloat16", "float16"])]
    pub dtype: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<ExitCode> {
    let a = match cmd {
        Command::Info(i) => return info(ctx, &i.model),
        Command::InitTiny(a) => a,
    };
    let corpus = match &a.corpus {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading corpus {}", p.display()))?),
        None => None,
    };
    let spec = TinySpec {
        hidden: a.hidden,
        layers: a.layers,
        heads: a.heads,
        kv_heads: a.kv_heads,
        intermediate: a.intermediate,
        vocab: a.vocab,
        tokenizer_vocab: a.tokenizer_vocab,
        seed: a.seed,
        dtype: a.dtype.clone(),
        ..TinySpec::default()
    };
    let report = init_tiny(&a.dir, &spec, corpus.as_deref())?;
    if ctx.json {
        print_json(&serde_json::json!({
            "dir": a.dir,
            "parameters": report.parameters,
            "tokenizer_size": report.tokenizer_size,
            "vocab_size": report.config.vocab_size,
        }))?;
    } else {
        println!(
            "wrote {} ({} parameters, tokenizer of {} tokens)",
            a.dir.display(),
            report.parameters,
            report.tokenizer_size
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn info(ctx: &Ctx, model: &std::path::Path) -> anyhow::Result<ExitCode> {
    let i = brain_train::source::model_info(model).with_context(|| format!("reading model {}", model.display()))?;
    if ctx.json {
        print_json(&serde_json::to_value(&i)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let params = if i.parameters >= 1_000_000 { format!("{:.1}M", i.parameters as f64 / 1e6) } else { i.parameters.to_string() };
    println!("model          {} ({})", i.path, i.format);
    println!("architecture   {}", i.architecture);
    println!("parameters     {params} ({} layers, hidden {})", i.layers, i.hidden_size);
    println!("quantization   {}", i.quantization.as_deref().unwrap_or("none"));
    println!("dtype          {}", i.dtype);
    println!("context        {}", i.context_length);
    println!("vocabulary     {} (tokenizer {}){}", i.vocab_size, i.tokenizer_size, if i.tie_word_embeddings { ", tied embeddings" } else { "" });
    println!("chat template  {}", i.chat_template);
    Ok(ExitCode::SUCCESS)
}
