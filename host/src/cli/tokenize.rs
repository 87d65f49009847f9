//! `brain tokenize --model MODEL --data FILE.jsonl [--json]`: what training sees of each line of
//! a chat / completions / text JSONL file — the token ids the model's chat template and
//! tokenizer give it, and which of them are trained.
//!
//! `--json` prints one `{"ids": [...], "mask": [...]}` per line (mask as 0/1, `mask[i]`: token
//! i is a trained target), for comparing with other tools; without it each line is shown as text
//! with the trained parts in `«…»`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use brain_train::tokenizer::{Tokenized, Tokenizer};

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model whose tokenizer and chat template to use (a Hugging Face directory).
    #[arg(long)]
    pub model: PathBuf,
    /// A JSONL file in mlx-lm's chat, completions or text format.
    #[arg(long)]
    pub data: PathBuf,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let tok =
        brain_train::source::load_tokenizer(&args.model).with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
    let lines = brain_train::jsonl::read_lines(&args.data)?
        .ok_or_else(|| anyhow::anyhow!("{}: no such file (pass a JSONL file, e.g. exports/<id>/chat/train.jsonl)", args.data.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !ctx.json && !ctx.quiet {
        eprintln!("chat template: {}", tok.template_source());
    }
    for (n, line) in &lines {
        let (format, t) = match brain_train::data::tokenize_line(line, &tok) {
            Ok(r) => r,
            Err(msg) => bail!("{}:{n}: {msg}", args.data.display()),
        };
        if ctx.json {
            let mask: Vec<u8> = t.mask.iter().map(|m| u8::from(*m)).collect();
            writeln!(out, "{}", serde_json::json!({"ids": t.tokens, "mask": mask}))?;
        } else {
            writeln!(
                out,
                "line {} ({format:?}): {} tokens, {} trained",
                n,
                t.tokens.len(),
                t.mask.iter().filter(|m| **m).count()
            )?;
            writeln!(
                out,
                "{}\n",
                marked(&tok, &t).with_context(|| format!("{}:{}: decoding", args.data.display(), n))?
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tokens as text, each run of trained tokens inside `«…»` (runs are decoded whole, so a
/// character split over several byte-level tokens comes out whole).
fn marked(tok: &Tokenizer, t: &Tokenized) -> anyhow::Result<String> {
    let mut s = String::new();
    let mut start = 0;
    while start < t.tokens.len() {
        let trained = t.mask[start];
        let end = (start..t.tokens.len()).find(|&j| t.mask[j] != trained).unwrap_or(t.tokens.len());
        let piece = tok.decode(&t.tokens[start..end], false)?;
        if trained {
            s.push('«');
            s.push_str(&piece);
            s.push('»');
        } else {
            s.push_str(&piece);
        }
        start = end;
    }
    Ok(s)
}
