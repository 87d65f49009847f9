//! Text measures shared by the filter plugins `quality`, `repetition` and `length` (the other two
//! include this file with `#[path]`). Pure functions of an example's text.
#![allow(dead_code)]

use sam_plugin::filter::{Example, Kind, Role, Verdict};

/// The last assistant message: what an example trains on (the chosen one of a pair).
pub fn response(ex: &Example) -> &str {
    ex.messages.iter().rev().find(|m| m.role == Role::Assistant).map_or("", |m| m.content.as_str())
}

/// The kind's name as in brain.toml and exports (`chat`, `routing`, …).
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Chat => "chat",
        Kind::Completion => "completion",
        Kind::Preference => "preference",
        Kind::Correction => "correction",
        Kind::Reasoning => "reasoning",
        Kind::Routing => "routing",
        Kind::Principle => "principle",
    }
}

/// Whether `text` (lower-cased) contains `needle` (lower-case).
pub fn has(lower: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| lower.contains(n))
}

/// How many times the needles occur in `lower`, in total.
pub fn count(lower: &str, needles: &[&str]) -> usize {
    needles.iter().map(|n| lower.matches(n).count()).sum()
}

/// Whether a line opens or closes a fenced code block (```` ``` ```` or `~~~`).
pub fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// Number of fence lines; odd means a code block was never closed.
pub fn fence_count(text: &str) -> usize {
    text.lines().filter(|l| is_fence(l)).count()
}

/// Whether a code block is opened and never closed.
pub fn unclosed_fence(text: &str) -> bool {
    !fence_count(text).is_multiple_of(2)
}

/// The text outside fenced code blocks, and the number of characters inside them.
pub fn split_code(text: &str) -> (String, usize) {
    let (mut prose, mut code, mut inside) = (String::new(), 0, false);
    for line in text.lines() {
        if is_fence(line) {
            inside = !inside;
        } else if inside {
            code += line.chars().count() + 1;
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    (prose, code)
}

/// Words that cannot end a finished sentence.
const DANGLING: &[&str] = &[
    "and", "or", "but", "the", "a", "an", "to", "of", "with", "for", "because", "which", "that", "in", "on", "at", "by", "from",
    "is", "are", "was", "if", "then", "so", "as", "into", "than",
];

/// Whether `text` stops before it is done: inside an open code block, on a comma, colon, open
/// bracket or dash, on an ellipsis, or on a word that cannot end a sentence.
pub fn looks_truncated(text: &str) -> bool {
    if unclosed_fence(text) {
        return true;
    }
    let t = text.trim_end();
    let Some(last_line) = t.lines().last() else { return false };
    if is_fence(last_line) {
        return false;
    }
    if t.ends_with("...") || t.ends_with('…') {
        return true;
    }
    if t.ends_with([',', ':', ';', '(', '[', '{', '-', '–', '—', '&', '\\', '=']) {
        return true;
    }
    let last_word = last_line.split_whitespace().last().unwrap_or("");
    DANGLING.contains(&last_word.to_lowercase().as_str())
}

/// Whitespace-separated words with surrounding punctuation removed; empty ones dropped.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().map(|w| w.trim_matches(|c: char| !c.is_alphanumeric())).filter(|w| !w.is_empty()).collect()
}

/// Numbered lines (`1.`, `2)`), `Step N`, and sentence-initial ordinals (`First,` `Then,` …)
/// plus causal links (`because`, `therefore`, …): the steps of a line of reasoning.
pub fn reasoning_steps(text: &str) -> usize {
    let (prose, _) = split_code(text);
    let numbered = prose
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
            digits > 0 && digits < 3 && t[digits..].starts_with(['.', ')']) && t[digits + 1..].starts_with(' ')
        })
        .count();
    let lower = prose.to_lowercase();
    let markers = count(
        &lower,
        &[
            "step 1", "step 2", "step 3", "step 4", "step 5", "first,", "firstly", "second,", "secondly", "third,", "then,",
            "next,", "finally,", "after that", "because", "therefore", "which means", "this means", "as a result", "so that",
        ],
    );
    numbered + markers
}

const TECHNICAL: &[&str] = &[
    "algorithm", "concurren", "async", "thread", "mutex", "lock", "memory", "allocat", "performance", "complexity",
    "architecture", "database", "transaction", "index", "security", "protocol", "distributed", "cache", "optimi", "refactor",
    "recurs", "pointer", "lifetime", "generic", "trait", "interface", "regex", "schema", "migration", "latency", "throughput",
    "invariant", "deadlock", "race", "serializ", "compiler", "parser", "gradient", "tensor", "quantiz",
];

/// Task complexity 1 (trivial) to 10 (hard): how long the exchange is, how much code it holds,
/// how many reasoning steps and distinct technical notions it uses, turns beyond one, and
/// whether it corrects a mistake.
pub fn complexity(ex: &Example) -> u8 {
    let all: String = ex.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    let chars = all.chars().count();
    let mut c = 1u32;
    c += [300, 1000, 3000].iter().filter(|&&n| chars > n).count() as u32;
    let fences = fence_count(&all);
    c += (fences >= 2) as u32 + (fences >= 6) as u32;
    let steps = reasoning_steps(response(ex));
    c += (steps >= 2) as u32 + (steps >= 5) as u32;
    let lower = all.to_lowercase();
    let notions = TECHNICAL.iter().filter(|t| lower.contains(*t)).count();
    c += (notions >= 2) as u32 + (notions >= 5) as u32;
    c += (ex.messages.iter().filter(|m| m.role == Role::User).count() > 1) as u32;
    c += (ex.kind == Kind::Correction) as u32;
    c.clamp(1, 10) as u8
}

/// The name of a rule with the score change it made, as verdicts list them: `too_short:-0.2`.
pub fn fired(rule: &str, delta: f32) -> String {
    if delta == 0.0 {
        format!("{rule}:0")
    } else {
        format!("{rule}:{delta:+}")
    }
}

/// Score changes in order; the verdict's `rule` is the rejecting one, else the largest change.
#[derive(Default)]
pub struct Tally {
    pub score: f32,
    pub flags: Vec<String>,
    pub fired: Vec<(String, f32)>,
    pub reject: Option<(String, String)>,
}

impl Tally {
    pub fn new(base: f32) -> Self {
        Tally { score: base, ..Default::default() }
    }

    /// Records a rule that fired: its score change and, when given, the flag it raises.
    pub fn fire(&mut self, rule: &str, delta: f32, flag: Option<&str>) {
        self.score += delta;
        self.fired.push((rule.to_string(), delta));
        if let Some(flag) = flag {
            if !self.flags.iter().any(|f| f == flag) {
                self.flags.push(flag.to_string());
            }
        }
    }

    /// The first rejection wins.
    pub fn reject(&mut self, rule: &str, reason: String) {
        if self.reject.is_none() {
            self.reject = Some((rule.to_string(), reason));
        }
    }

    pub fn verdict(self, complexity: u8) -> Verdict {
        let rule = match &self.reject {
            Some((rule, _)) => rule.clone(),
            None => self
                .fired
                .iter()
                .filter(|(_, d)| *d != 0.0)
                .fold(None::<&(String, f32)>, |best, f| match best {
                    Some(b) if b.1.abs() >= f.1.abs() => Some(b),
                    _ => Some(f),
                })
                .map_or_else(|| "base".to_string(), |(r, _)| r.clone()),
        };
        Verdict {
            // Sums of tenths drift in f32: round to 1e-4.
            score: ((self.score.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0),
            flags: self.flags,
            complexity: complexity.clamp(1, 10),
            reject_reason: self.reject.map(|(_, reason)| reason),
            rule,
            fired: self.fired.iter().map(|(r, d)| fired(r, *d)).collect(),
        }
    }
}

/// A test example: a user prompt and an assistant response.
#[cfg(test)]
pub fn example(kind: Kind, prompt: &str, answer: &str) -> Example {
    use sam_plugin::filter::Message;
    Example {
        kind,
        task: "test".into(),
        messages: vec![Message { role: Role::User, content: prompt.into() }, Message { role: Role::Assistant, content: answer.into() }],
        rejected: None,
        provenance: "test#1".into(),
        metadata: String::new(),
    }
}
