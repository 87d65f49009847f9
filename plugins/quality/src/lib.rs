//! Filter plugin `quality`: the seed's quality scoring of a response (knowledge distillation's
//! quality filter), with its ten flags and a 1–10 complexity. See README.md.
//!
//! Score = `base` (0.5) + the changes of the rules that fire, clamped to [0, 1]:
//! +0.1 reasoning with ≥ 2 steps, +0.15 explicit correction, +0.1 extracted principles,
//! +0.05 complexity ≥ 5, −0.2 response < 100 chars, −0.1 direct answer without reasoning,
//! −0.3 repetitive, −0.2 incomplete. Rejected when the score is < 0.3, the response < 50 chars,
//! repetition > 40 %, or it is a refusal. Every threshold and weight is configurable.

pub mod text;

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use rustc_hash::FxBuildHasher;
use sam_plugin::filter::{Example, Kind, Role, Verdict};
use serde::Deserialize;

use crate::text::{code_stats, complexity, fence_count, kind_name, looks_truncated, response, Measures, Scanner, Tally};

/// Score changes of the scoring rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub reasoning: f32,
    pub correction: f32,
    pub principles: f32,
    pub complexity: f32,
    pub too_short: f32,
    pub no_reasoning: f32,
    pub repetition: f32,
    pub incomplete: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            reasoning: 0.1,
            correction: 0.15,
            principles: 0.1,
            complexity: 0.05,
            too_short: -0.2,
            no_reasoning: -0.1,
            repetition: -0.3,
            incomplete: -0.2,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub base: f32,
    /// Reasoning steps for the `reasoning` bonus.
    pub min_reasoning_steps: usize,
    /// Complexity for the `complexity` bonus.
    pub complexity_bonus_at: u8,
    /// Responses shorter than this (characters) get `too_short`.
    pub short_chars: usize,
    /// Responses shorter than this are rejected.
    pub reject_short_chars: usize,
    /// Responses longer than this are flagged `too_long`.
    pub long_chars: usize,
    /// Repetition ratio (duplicate word trigrams) above which `repetition` applies.
    pub repetition_above: f32,
    /// Repetition ratio above which the example is rejected.
    pub reject_repetition_above: f32,
    /// Scores below this are rejected.
    pub reject_below: f32,
    pub weights: Weights,
    /// Kinds this filter does not score (short by design): they get the base score and the
    /// rule `not_scored`.
    pub skip_kinds: Vec<String>,
    /// Task labels not scored, likewise (commit messages are short answers by nature).
    pub skip_tasks: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base: 0.5,
            min_reasoning_steps: 2,
            complexity_bonus_at: 5,
            short_chars: 100,
            reject_short_chars: 50,
            long_chars: 8000,
            repetition_above: 0.2,
            reject_repetition_above: 0.4,
            reject_below: 0.3,
            weights: Weights::default(),
            skip_kinds: vec!["routing".into(), "principle".into()],
            skip_tasks: vec!["commit-message".into()],
        }
    }
}

pub struct Quality {
    config: Config,
}

const REFUSAL: &[&str] = &[
    "i can't help with",
    "i cannot help with",
    "i can't assist",
    "i cannot assist",
    "i'm sorry, but i can",
    "i am sorry, but i can",
    "as an ai language model",
    "as an ai, i can",
    "i'm unable to help",
    "i am unable to help",
    "i'm unable to assist",
    "i won't be able to help",
    "i cannot provide",
    "i can't provide",
    "i must decline",
    "i cannot comply",
    "i can't comply",
];

const CORRECTION: &[&str] = &[
    "correction:",
    "i was wrong",
    "i made a mistake",
    "my mistake",
    "my previous answer",
    "that was incorrect",
    "that is incorrect",
    "that's incorrect",
    "the mistake was",
    "the mistake is",
    "the error was",
    "should have been",
    "let me correct",
    "corrected version",
];

const PRINCIPLE_STARTS: &[&str] = &[
    "always ",
    "never ",
    "principle:",
    "rule of thumb",
    "key takeaway",
    "best practice",
    "as a rule",
    "lesson:",
    "lesson learned",
];

const HEDGES: &[&str] = &[
    "i'm not sure",
    "i am not sure",
    "not certain",
    "i don't know",
    "i do not know",
    "i think",
    "i believe",
    "might be",
    "possibly",
    "perhaps",
    "probably",
    "i guess",
    "unclear",
];

const OUTDATED: &[&str] = &[
    "as of my last update",
    "knowledge cutoff",
    "as of my knowledge",
    "my training data",
    "at the time of writing",
    "may have changed since",
    "python 2.",
    "as of 2021",
    "as of 2022",
    "as of 2023",
];

const UNSOURCED: &[&str] = &[
    "studies show",
    "according to a study",
    "research shows",
    "according to research",
    "statistics show",
    "et al.",
];

/// The phrase lists, found in the same pass over the response as the reasoning steps and
/// technical notions; indices into [`Measures::found`](text::Measures).
static SCANNER: LazyLock<Scanner> = LazyLock::new(|| Scanner::new(&[REFUSAL, CORRECTION, HEDGES, OUTDATED, UNSOURCED]));
const REFUSALS: usize = 0;
const CORRECTIONS: usize = 1;
const HEDGED: usize = 2;
const DATED: usize = 3;
const CLAIMS: usize = 4;

/// Duplicate word trigrams over all word trigrams of `lower` (0 when it has fewer than 10 words).
pub fn repetition_ratio(lower: &str) -> f32 {
    let words = text::words(lower);
    if words.len() < 10 {
        return 0.0;
    }
    // Words as small integers, so a trigram is one u64 (21 bits each: up to 2 M distinct words).
    let mut index: HashMap<&str, u64, FxBuildHasher> = HashMap::with_capacity_and_hasher(words.len(), FxBuildHasher);
    let ids: Vec<u64> = words
        .iter()
        .map(|w| {
            let next = index.len() as u64;
            *index.entry(w).or_insert(next)
        })
        .collect();
    if ids.iter().any(|&id| id >= 1 << 21) {
        return repetition_ratio_of_slices(&words);
    }
    let grams = words.len() - 2;
    let mut distinct: HashSet<u64, FxBuildHasher> = HashSet::with_capacity_and_hasher(grams, FxBuildHasher);
    for w in ids.windows(3) {
        distinct.insert(w[0] << 42 | w[1] << 21 | w[2]);
    }
    1.0 - distinct.len() as f32 / grams as f32
}

/// The same ratio for texts with more distinct words than a packed trigram holds.
fn repetition_ratio_of_slices(words: &[&str]) -> f32 {
    let grams = words.len() - 2;
    let distinct: HashSet<&[&str], FxBuildHasher> = words.windows(3).collect();
    1.0 - distinct.len() as f32 / grams as f32
}

/// The example's metadata object (`correction`, `principles` keys), if it has any.
fn metadata(ex: &Example) -> serde_json::Value {
    if ex.metadata.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&ex.metadata).unwrap_or(serde_json::Value::Null)
}

fn is_correction(ex: &Example, meta: &serde_json::Value, phrase_found: bool) -> bool {
    ex.kind == Kind::Correction || meta.get("correction").is_some_and(|v| v.as_bool() == Some(true) || v.is_object()) || phrase_found
}

/// Whether `s` starts with `prefix` (lower-case ASCII), ignoring ASCII case.
fn starts_with_ignoring_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn has_principles(meta: &serde_json::Value, response: &str) -> bool {
    if meta.get("principles").and_then(|p| p.as_array()).is_some_and(|p| !p.is_empty()) {
        return true;
    }
    response.lines().chain(response.split(". ")).any(|s| {
        let s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '-' || c == '*');
        // Most sentences start with a letter no statement of principle starts with.
        let first = s.as_bytes().first().map(u8::to_ascii_lowercase);
        first.is_some_and(|b| {
            PRINCIPLE_STARTS
                .iter()
                .any(|p| p.as_bytes()[0] == b && starts_with_ignoring_case(s, p))
        })
    })
}

fn urls(s: &str) -> impl Iterator<Item = &str> {
    // Most responses hold no URL: one search instead of a look at every word.
    let any = memchr::memmem::find(s.as_bytes(), b"http").is_some();
    s.split_whitespace()
        .take_while(move |_| any)
        .filter(|w| w.contains("http://") || w.contains("https://"))
        .map(|w| {
            let start = w.find("http").unwrap_or(0);
            w[start..].trim_end_matches(|c: char| !(c.is_alphanumeric() || c == '/'))
        })
}

impl Quality {
    pub fn new(config: Config) -> Self {
        Quality { config }
    }

    pub fn judge(&self, ex: &Example) -> Verdict {
        let c = &self.config;
        let w = &c.weights;
        if c.skip_kinds.iter().any(|k| k == kind_name(ex.kind)) || c.skip_tasks.contains(&ex.task) {
            return Verdict {
                score: c.base.clamp(0.0, 1.0),
                flags: vec![],
                complexity: complexity(ex),
                reject_reason: None,
                rule: "not_scored".into(),
                fired: vec![],
            };
        }
        let resp = response(ex).trim();
        let chars = resp.chars().count();
        let Measures {
            steps,
            complexity: cx,
            found,
        } = SCANNER.measure(ex);
        let repetition = repetition_ratio(&resp.to_lowercase());
        let meta = metadata(ex);
        let mut t = Tally::new(c.base);

        if steps >= c.min_reasoning_steps {
            t.fire("reasoning", w.reasoning, None);
        }
        if is_correction(ex, &meta, found[CORRECTIONS] > 0) {
            t.fire("correction", w.correction, None);
        }
        if has_principles(&meta, resp) {
            t.fire("principles", w.principles, None);
        }
        if cx >= c.complexity_bonus_at {
            t.fire("complexity", w.complexity, None);
        }
        if chars < c.short_chars {
            t.fire("too_short", w.too_short, Some("too_short"));
        }
        if steps == 0 {
            t.fire("no_reasoning", w.no_reasoning, Some("no_reasoning"));
        }
        if repetition > c.repetition_above {
            t.fire("repetition", w.repetition, Some("repetition"));
        }
        if looks_truncated(resp) {
            t.fire("incomplete", w.incomplete, Some("incomplete"));
        }

        // Flags without a score change.
        if chars > c.long_chars {
            t.fire("too_long", 0.0, Some("too_long"));
        }
        if fence_count(resp) >= 2 && matches!(code_stats(resp), (prose, code) if code > 0 && prose < 20) {
            t.fire("code_only", 0.0, Some("code_only"));
        }
        let refusal = found[REFUSALS] > 0;
        if refusal {
            t.fire("refusal", 0.0, Some("refusal"));
        }
        if found[HEDGED] >= 2 {
            t.fire("uncertain", 0.0, Some("uncertain"));
        }
        if found[DATED] > 0 {
            t.fire("outdated", 0.0, Some("outdated"));
        }
        let in_prompt = |url: &str| {
            ex.messages
                .iter()
                .filter(|m| m.role != Role::Assistant)
                .any(|m| m.content.contains(url))
        };
        if found[CLAIMS] > 0 || urls(resp).any(|u| !in_prompt(u)) {
            t.fire("hallucination_risk", 0.0, Some("hallucination_risk"));
        }

        // Rejections, first one decides.
        if refusal {
            t.reject("refusal", "the response is a refusal".into());
        }
        if chars < c.reject_short_chars {
            t.reject(
                "too_short",
                format!("the response has {chars} characters, under the minimum of {}", c.reject_short_chars),
            );
        }
        if repetition > c.reject_repetition_above {
            t.reject(
                "repetition",
                format!(
                    "{:.0} % of the response's word trigrams repeat (limit {:.0} %)",
                    repetition * 100.0,
                    c.reject_repetition_above * 100.0
                ),
            );
        }
        let score = t.score.clamp(0.0, 1.0);
        if score < c.reject_below {
            t.reject("low_score", format!("quality score {score:.2} is below {:.2}", c.reject_below));
        }
        t.verdict(cx)
    }
}

impl sam_plugin::Filter for Quality {
    fn open(config: serde_json::Value) -> Result<Self, String> {
        let config: Config = serde_json::from_value(config).map_err(|e| format!("quality config: {e}"))?;
        Ok(Quality::new(config))
    }

    fn evaluate(&self, example: &Example) -> Verdict {
        self.judge(example)
    }
}

sam_plugin::export_filter!(Quality);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reference_tests;
