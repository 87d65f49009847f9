//! Evaluation (`brain eval`) of a model (+ adapters) on a test JSONL: perplexity (the SFT
//! trainer's test loss), and from greedy generations: routing accuracy, repetition rate, stop
//! rate and an optional caller-supplied quality score. Deterministic: greedy decoding, fixed
//! order, no timing in the report — the same inputs give the same [`EvalReport`].
//!
//! Test lines are SFT lines (chat `{"messages"}` or `{"prompt","completion"}`; `{"text"}` lines
//! count for perplexity only). The prompt of a generation is every message before the last
//! assistant message, which is the expected answer. Optional keys: `"kind"` / `"task"`
//! (`"routing"` marks a routing example) and `"label"` (the expected routing label; default:
//! the first line of the expected answer).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data;
use crate::error::{Error, Result};
use crate::generate::{FinishReason, GenOptions, Generator};
use crate::sampling::{repeated_ngrams, SamplingOptions};
use crate::tokenizer::Message;
use crate::trainer::{ce_path, parse_dtype};

/// Arguments of [`evaluate`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalArgs {
    pub model: PathBuf,
    /// Adapter directories (see [`crate::generate::GenerateArgs::adapter_path`]).
    pub adapter_path: Vec<PathBuf>,
    /// A test JSONL file, or a data directory holding test.jsonl.
    pub data: PathBuf,
    /// Batch size of the perplexity pass.
    pub batch_size: usize,
    pub max_seq_length: usize,
    /// Generate for at most this many non-routing examples (in file order; 0: all); every
    /// routing example is generated, for the routing accuracy.
    pub max_examples: usize,
    /// Tokens per generation.
    pub max_tokens: usize,
    /// n of the repeated-n-gram rate (over whitespace-separated words).
    pub ngram: usize,
    pub seed: u64,
    pub dtype: Option<String>,
    /// Cross-entropy implementation (auto, fused, composed).
    pub loss: String,
    /// Keep the generations in the report.
    pub keep_samples: bool,
}

impl Default for EvalArgs {
    fn default() -> Self {
        EvalArgs {
            model: PathBuf::new(),
            adapter_path: Vec::new(),
            data: PathBuf::from("data"),
            batch_size: 4,
            max_seq_length: 2048,
            max_examples: 0,
            max_tokens: 128,
            ngram: 3,
            seed: 0,
            dtype: None,
            loss: "auto".into(),
            keep_samples: true,
        }
    }
}

/// One generation of the evaluation (what the scorer sees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSample {
    /// Line number in the test file.
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub prompt: Vec<Message>,
    pub expected: String,
    pub generated: String,
    pub generation_tokens: usize,
    pub finish_reason: FinishReason,
    /// Routing examples: whether the generated label equals the expected one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_correct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub data: PathBuf,
    /// Test examples with trained tokens (perplexity).
    pub examples: usize,
    pub test_loss: f32,
    pub perplexity: f32,
    /// Tokens the loss is averaged over.
    pub tokens: usize,
    /// Generations made.
    pub generations: usize,
    /// Share of routing examples whose generated label equals the expected one (None: no
    /// routing example).
    pub routing_accuracy: Option<f32>,
    pub routing_examples: usize,
    /// Share of repeated word n-grams over all generations.
    pub repetition_rate: f32,
    /// Share of generations that ended with the end-of-turn token.
    pub stop_rate: f32,
    /// Share of generations cut for looping.
    pub loop_rate: f32,
    pub mean_generation_tokens: f32,
    /// Mean score from the scorer (None: no scorer).
    pub mean_score: Option<f32>,
    pub ngram: usize,
    pub max_tokens: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<EvalSample>,
}

/// Scores generations (e.g. the host's quality filter plugins): one score per sample.
pub type Scorer<'a> = dyn FnMut(&[EvalSample]) -> anyhow::Result<Vec<f32>> + 'a;

/// Normalize a routing label: first non-empty line, a leading `label:` dropped, lowercased,
/// surrounding quotes/backticks/asterisks/punctuation trimmed.
pub fn normalize_label(s: &str) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let lower = line.to_lowercase();
    let lower = lower.strip_prefix("label:").or_else(|| lower.strip_prefix("handler:")).unwrap_or(&lower).trim().to_string();
    lower.trim_matches(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')).to_string()
}

/// A test line prepared for generation.
struct Case {
    line: usize,
    kind: Option<String>,
    prompt: Vec<Message>,
    expected: String,
    label: Option<String>,
}

fn case(line: usize, v: &Value) -> std::result::Result<Option<Case>, String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let mut messages: Vec<Message> = if let (Some(p), Some(c)) = (obj.get("prompt"), obj.get("completion")) {
        let p = p.as_str().ok_or("\"prompt\" must be a string")?;
        let c = c.as_str().ok_or("\"completion\" must be a string")?;
        vec![Message::new("user", p), Message::new("assistant", c)]
    } else if let Some(m) = obj.get("messages") {
        let arr = m.as_array().ok_or("\"messages\" must be an array")?;
        arr.iter()
            .enumerate()
            .map(|(i, m)| {
                let role = m.get("role").and_then(|r| r.as_str()).ok_or(format!("messages[{i}]: missing string \"role\""))?;
                let content = m.get("content").and_then(|c| c.as_str()).unwrap_or("");
                Ok(Message::new(role, content))
            })
            .collect::<std::result::Result<_, String>>()?
    } else {
        return Ok(None); // text lines: perplexity only
    };
    let Some(last) = messages.iter().rposition(|m| m.role == "assistant") else { return Ok(None) };
    let expected = messages[last].content.clone();
    messages.truncate(last);
    if messages.is_empty() {
        return Ok(None);
    }
    let s = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(String::from);
    let kind = s("kind").or_else(|| s("task"));
    let routing = obj.get("kind").and_then(|v| v.as_str()) == Some("routing") || obj.get("task").and_then(|v| v.as_str()) == Some("routing");
    let label = if routing { Some(s("label").unwrap_or_else(|| expected.clone())) } else { None };
    Ok(Some(Case { line, kind, prompt: messages, expected, label }))
}

fn test_file(data: &Path) -> PathBuf {
    if data.is_dir() {
        data.join("test.jsonl")
    } else {
        data.to_path_buf()
    }
}

/// Evaluate. `scorer` gets every generation once (in file order) and returns a score each.
pub fn evaluate(args: &EvalArgs, scorer: Option<&mut Scorer<'_>>) -> Result<EvalReport> {
    let file = test_file(&args.data);
    let mut g = Generator::load(&args.model, &args.adapter_path, parse_dtype(&args.dtype)?)?;
    evaluate_with(&mut g, &file, args, scorer)
}

/// [`evaluate`] with an already loaded generator (e.g. right after training) on `file`.
pub fn evaluate_with(g: &mut Generator, file: &Path, args: &EvalArgs, scorer: Option<&mut Scorer<'_>>) -> Result<EvalReport> {
    let ds = data::load_split(file, &g.tokenizer, args.max_seq_length)?
        .ok_or_else(|| Error::Args(format!("{}: the test file does not exist", file.display())))?;
    let (test_loss, tokens) = if ds.is_empty() {
        (f32::NAN, 0)
    } else {
        crate::trainer::evaluate(&g.model, &ds, args.batch_size.max(1), 0, g.tokenizer.pad_id, ce_path(&args.loss)?)?
    };

    let lines = crate::jsonl::read_lines(file)?.ok_or_else(|| Error::Args(format!("{}: the test file does not exist", file.display())))?;
    let mut cases = Vec::new();
    let mut others = 0;
    for (n, line) in &lines {
        let err = |msg: String| Error::Data { file: file.to_path_buf(), line: *n, msg };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        // Every routing example is generated (its accuracy needs them all; a split holds few);
        // other examples up to `max_examples`.
        if let Some(c) = case(*n, &v).map_err(err)? {
            if c.label.is_some() || args.max_examples == 0 || others < args.max_examples {
                others += usize::from(c.label.is_none());
                cases.push(c);
            }
        }
    }

    let opts = GenOptions { max_tokens: args.max_tokens, sampling: SamplingOptions { temp: 0.0, seed: args.seed, ..Default::default() }, stop_on_loop: true };
    let mut samples = Vec::with_capacity(cases.len());
    let (mut repeated, mut ngrams, mut stops, mut loops, mut gen_tokens) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut routed, mut routed_ok) = (0usize, 0usize);
    for c in cases {
        g.reset();
        let out = g.reply(&c.prompt, &opts)?;
        let words: Vec<&str> = out.text.split_whitespace().collect();
        let (r, t) = repeated_ngrams(&words, args.ngram);
        (repeated, ngrams) = (repeated + r, ngrams + t);
        stops += (out.finish_reason == FinishReason::Stop) as usize;
        loops += (out.finish_reason == FinishReason::Repetition) as usize;
        gen_tokens += out.generation_tokens;
        let routing_correct = c.label.as_ref().map(|l| normalize_label(l) == normalize_label(&out.text));
        if let Some(ok) = routing_correct {
            routed += 1;
            routed_ok += ok as usize;
        }
        samples.push(EvalSample {
            line: c.line,
            kind: c.kind,
            prompt: c.prompt,
            expected: c.expected,
            generated: out.text,
            generation_tokens: out.generation_tokens,
            finish_reason: out.finish_reason,
            routing_correct,
            score: None,
        });
    }
    let mut mean_score = None;
    if let Some(score) = scorer {
        if !samples.is_empty() {
            let scores = score(&samples).map_err(|e| Error::Args(format!("scoring the generations failed: {e:#}")))?;
            if scores.len() != samples.len() {
                return Err(Error::Args(format!("the scorer returned {} scores for {} generations", scores.len(), samples.len())));
            }
            for (s, v) in samples.iter_mut().zip(&scores) {
                s.score = Some(*v);
            }
            mean_score = Some((scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64) as f32);
        }
    }
    let n = samples.len();
    let share = |k: usize| if n == 0 { 0.0 } else { k as f32 / n as f32 };
    Ok(EvalReport {
        data: file.to_path_buf(),
        examples: ds.len(),
        test_loss,
        perplexity: test_loss.exp(),
        tokens,
        generations: n,
        routing_accuracy: (routed > 0).then(|| routed_ok as f32 / routed as f32),
        routing_examples: routed,
        repetition_rate: if ngrams == 0 { 0.0 } else { repeated as f32 / ngrams as f32 },
        stop_rate: share(stops),
        loop_rate: share(loops),
        mean_generation_tokens: share(gen_tokens),
        mean_score,
        ngram: args.ngram,
        max_tokens: args.max_tokens,
        samples: if args.keep_samples { samples } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_label;

    #[test]
    fn labels() {
        assert_eq!(normalize_label("claude\nReason: big."), "claude");
        assert_eq!(normalize_label("  **Local**  "), "local");
        assert_eq!(normalize_label("Label: `local-small`."), "local-small");
        assert_eq!(normalize_label("\n\nclaude:"), "claude");
    }
}
