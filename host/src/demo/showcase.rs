//! The demo's "before and after": the same held-out questions answered by the base model and by
//! the trained one (greedy), and the test split's loss under both.

use std::path::Path;

use anyhow::Context as _;
use brain_train::generate::{GenOptions, Generator};
use brain_train::tokenizer::Message;
use brain_train::{evaluate_test, TestArgs};
use serde::Serialize;

/// Questions about facts in the bundled sample transcript, in words the transcript never uses:
/// the base model cannot know the answers; the trained one has seen each fact twice.
pub(super) const QUESTIONS: [&str; 3] = [
    "On which port can I reach the todo-app dev server?",
    "Tell me who maintains todo-app.",
    "Which license does todo-app use?",
];

/// One question with both answers.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub question: String,
    pub before: String,
    pub after: String,
}

/// Before and after on the test split.
#[derive(Debug, Clone, Serialize)]
pub struct Showcase {
    pub test_loss_before: f32,
    pub test_loss_after: f32,
    /// Target tokens the test loss is over.
    pub test_tokens: usize,
    pub answers: Vec<Answer>,
}

fn answers(model: &Path, adapter: Option<&Path>, max_tokens: usize) -> anyhow::Result<Vec<String>> {
    let adapters: Vec<_> = adapter.into_iter().map(Path::to_path_buf).collect();
    let mut g = Generator::load(model, &adapters, None).with_context(|| format!("loading {}", model.display()))?;
    let opts = GenOptions { max_tokens, ..GenOptions::default() };
    QUESTIONS
        .iter()
        .map(|q| {
            g.reset();
            Ok(g.reply(&[Message::new("user", q)], &opts)?.text.trim().to_string())
        })
        .collect()
}

/// Score the base model and `model` + `adapter` on `data/test.jsonl` and ask both [`QUESTIONS`].
pub(super) fn run(model: &Path, adapter: &Path, data: &Path, max_seq_length: usize) -> anyhow::Result<Showcase> {
    let test = |adapter: Option<&Path>| {
        evaluate_test(&TestArgs {
            model: model.to_path_buf(),
            data: data.to_path_buf(),
            adapter_path: adapter.map(Path::to_path_buf),
            batch_size: 4,
            max_seq_length,
            test_batches: 0,
            dtype: None,
            loss: "auto".into(),
        })
        .context("scoring the test split")
    };
    let before = test(None)?;
    let after = test(Some(adapter))?;
    let (b, a) = (answers(model, None, 40)?, answers(model, Some(adapter), 40)?);
    let answers = QUESTIONS
        .iter()
        .zip(b.into_iter().zip(a))
        .map(|(q, (before, after))| Answer { question: q.to_string(), before, after })
        .collect();
    Ok(Showcase { test_loss_before: before.test_loss, test_loss_after: after.test_loss, test_tokens: after.tokens, answers })
}

/// The report's lines for `s`.
pub(super) fn render(s: &Showcase) -> String {
    let mut out = format!(
        "\ntest loss: {:.3} before → {:.3} after training ({} held-out tokens)\n",
        s.test_loss_before, s.test_loss_after, s.test_tokens
    );
    for a in &s.answers {
        out.push_str(&format!("\nQ: {}\n  before: {}\n  after:  {}\n", a.question, one_line(&a.before), one_line(&a.after)));
    }
    out
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}
