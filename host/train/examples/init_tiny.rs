//! `cargo run -p brain-train --example init_tiny -- DIR [--hidden 64 --layers 2 --vocab 0 ...]`
//! Writes a random tiny Qwen2 model (and, with --data, a synthetic chat data set).

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    dir: PathBuf,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
    #[arg(long, default_value_t = 128)]
    intermediate: usize,
    /// Embedding rows (0: tokenizer size rounded up to 64; 151936 for a Qwen-size head).
    #[arg(long, default_value_t = 0)]
    vocab: usize,
    #[arg(long, default_value_t = 512)]
    tokenizer_vocab: usize,
    #[arg(long)]
    untied: bool,
    #[arg(long, default_value = "float32")]
    dtype: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write a synthetic chat data set into this directory: N train, N/8 valid, N/8 test.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    examples: usize,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let spec = brain_train::tiny::TinySpec {
        hidden: a.hidden,
        layers: a.layers,
        heads: a.heads,
        kv_heads: a.kv_heads,
        intermediate: a.intermediate,
        vocab: a.vocab,
        tokenizer_vocab: a.tokenizer_vocab,
        tie_word_embeddings: !a.untied,
        dtype: a.dtype,
        seed: a.seed,
        ..Default::default()
    };
    let r = brain_train::tiny::init_tiny(&a.dir, &spec, None)?;
    println!("{}: {} parameters, tokenizer {} tokens, vocab {}", a.dir.display(), r.parameters, r.tokenizer_size, r.config.vocab_size);
    if let Some(d) = a.data {
        let n = a.examples;
        brain_train::tiny::write_synthetic_chat(&d, n, (n / 8).max(1), (n / 8).max(1), a.seed)?;
        println!("{}: synthetic chat data", d.display());
    }
    Ok(())
}
