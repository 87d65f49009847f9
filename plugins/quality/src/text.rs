//! Text measures shared by the filter plugins `quality`, `repetition` and `length` (the other two
//! include this file with `#[path]`). Pure functions of an example's text.
#![allow(dead_code)]

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use sam_plugin::filter::{Example, Kind, Role, Verdict};

/// The last assistant message: what an example trains on (the chosen one of a pair).
pub fn response(ex: &Example) -> &str {
    ex.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Assistant)
        .map_or("", |m| m.content.as_str())
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

/// Lists of lower-case ASCII phrases found in one pass over a text, ignoring ASCII case (each
/// list used to be a separate `contains` scan over a lower-cased copy: ~40 scans per example).
pub struct Phrases {
    automaton: AhoCorasick,
    /// The list each phrase comes from, and its place in that list.
    origin: Vec<(usize, usize)>,
    lists: usize,
}

impl Phrases {
    pub fn new(lists: &[&[&str]]) -> Phrases {
        let phrases: Vec<&str> = lists.iter().flat_map(|l| l.iter().copied()).collect();
        let origin = lists
            .iter()
            .enumerate()
            .flat_map(|(i, l)| (0..l.len()).map(move |j| (i, j)))
            .collect();
        let automaton = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&phrases)
            .expect("the phrase lists are plain strings");
        Phrases {
            automaton,
            origin,
            lists: lists.len(),
        }
    }

    /// Occurrences of each list's phrases in `text`, by list, as `str::matches` counts each
    /// phrase: one phrase's occurrences do not overlap, different phrases' may.
    pub fn count(&self, text: &str) -> Vec<usize> {
        let mut counts = vec![0; self.lists];
        self.scan(text, |list, _, _| {
            counts[list] += 1;
            true
        });
        counts
    }

    /// Calls `found(list, index in list, start byte)` for each occurrence, in the order they
    /// end; it says whether the occurrence counts (one that does not, does not hide a later
    /// overlapping occurrence of the same phrase).
    pub fn scan(&self, text: &str, mut found: impl FnMut(usize, usize, usize) -> bool) {
        // Where each phrase's last counted occurrence ends.
        let mut end = vec![0; self.origin.len()];
        for m in self.automaton.find_overlapping_iter(text) {
            let p = m.pattern().as_usize();
            let (list, index) = self.origin[p];
            if m.start() >= end[p] && found(list, index, m.start()) {
                end[p] = m.end();
            }
        }
    }
}

/// Whether a line opens or closes a fenced code block (```` ``` ```` or `~~~`).
pub fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// Whether `text` may hold a fence line (most texts hold none, and skip every line scan).
fn may_have_fences(text: &str) -> bool {
    let b = text.as_bytes();
    memchr::memchr2_iter(b'`', b'~', b).any(|i| b.get(i + 1) == Some(&b[i]) && b.get(i + 2) == Some(&b[i]))
}

/// Number of fence lines; odd means a code block was never closed.
pub fn fence_count(text: &str) -> usize {
    if !may_have_fences(text) {
        return 0;
    }
    text.lines().filter(|l| is_fence(l)).count()
}

/// Whether a code block is opened and never closed.
pub fn unclosed_fence(text: &str) -> bool {
    !fence_count(text).is_multiple_of(2)
}

/// Non-whitespace characters outside fenced code blocks, and characters inside them (a newline
/// counted per code line).
pub fn code_stats(text: &str) -> (usize, usize) {
    let (mut prose, mut code, mut inside) = (0, 0, false);
    for line in text.lines() {
        if is_fence(line) {
            inside = !inside;
        } else if inside {
            code += line.chars().count() + 1;
        } else {
            prose += line.chars().filter(|c| !c.is_whitespace()).count();
        }
    }
    (prose, code)
}

/// Words that cannot end a finished sentence.
const DANGLING: &[&str] = &[
    "and", "or", "but", "the", "a", "an", "to", "of", "with", "for", "because", "which", "that", "in", "on", "at", "by", "from", "is",
    "are", "was", "if", "then", "so", "as", "into", "than",
];

/// Whether `text` stops before it is done: inside an open code block, on a comma, colon, open
/// bracket or dash, on an ellipsis, or on a word that cannot end a sentence.
pub fn looks_truncated(text: &str) -> bool {
    if unclosed_fence(text) {
        return true;
    }
    let t = text.trim_end();
    if t.is_empty() {
        return false;
    }
    let last_line = t.rfind('\n').map_or(t, |i| &t[i + 1..]);
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
    if !text.is_ascii() {
        return text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .collect();
    }
    // The same split byte by byte (`char::is_whitespace` on ASCII includes \x0b and \x0c).
    let b = text.as_bytes();
    let space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let mut out = Vec::with_capacity(text.len() / 5);
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        let (mut start, mut end) = (i, i);
        while end < b.len() && !space(b[end]) {
            end += 1;
        }
        i = end;
        while start < end && !b[start].is_ascii_alphanumeric() {
            start += 1;
        }
        while end > start && !b[end - 1].is_ascii_alphanumeric() {
            end -= 1;
        }
        if start < end {
            out.push(&text[start..end]);
        }
    }
    out
}

/// Sentence-initial ordinals and causal links that mark the steps of a line of reasoning.
#[rustfmt::skip]
pub const STEP_MARKERS: &[&str] = &[
    "step 1", "step 2", "step 3", "step 4", "step 5", "first,", "firstly", "second,", "secondly", "third,", "then,", "next,",
    "finally,", "after that", "because", "therefore", "which means", "this means", "as a result", "so that",
];

/// Words that suggest a technical notion (stems: `concurren` covers concurrent and concurrency).
#[rustfmt::skip]
pub const TECHNICAL: &[&str] = &[
    "algorithm", "concurren", "async", "thread", "mutex", "lock", "memory", "allocat", "performance", "complexity", "architecture",
    "database", "transaction", "index", "security", "protocol", "distributed", "cache", "optimi", "refactor", "recurs", "pointer",
    "lifetime", "generic", "trait", "interface", "regex", "schema", "migration", "latency", "throughput", "invariant", "deadlock",
    "race", "serializ", "compiler", "parser", "gradient", "tensor", "quantiz",
];

/// What every filter measures, plus a filter's own phrase lists, found in one pass over the
/// response.
pub struct Scanner {
    /// STEP_MARKERS, TECHNICAL, then the filter's lists.
    phrases: Phrases,
}

/// An example's measures (see [`Scanner::measure`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Measures {
    /// [`reasoning_steps`] of the response.
    pub steps: usize,
    pub complexity: u8,
    /// Occurrences of each of the filter's own lists in the response.
    pub found: Vec<usize>,
}

const OWN: usize = 2;

/// The scanner of filters without lists of their own.
static PLAIN: LazyLock<Scanner> = LazyLock::new(|| Scanner::new(&[]));

impl Scanner {
    pub fn new(own: &[&[&str]]) -> Scanner {
        let lists: Vec<&[&str]> = [STEP_MARKERS, TECHNICAL].into_iter().chain(own.iter().copied()).collect();
        Scanner {
            phrases: Phrases::new(&lists),
        }
    }

    /// Reasoning steps, technical notions and the filter's lists in the response; notions in
    /// the other messages; then the complexity.
    pub fn measure(&self, ex: &Example) -> Measures {
        let mut notions = [false; TECHNICAL.len()];
        let mut found = vec![0; self.phrases.lists - OWN];
        let response = ex.messages.iter().rposition(|m| m.role == Role::Assistant);
        let mut steps = 0;
        for (i, m) in ex.messages.iter().enumerate() {
            if Some(i) == response {
                steps = self.steps(&m.content, |list, index| match list {
                    1 => notions[index] = true,
                    own => found[own - OWN] += 1,
                });
            } else {
                self.phrases.scan(&m.content, |list, index, _| {
                    if list == 1 {
                        notions[index] = true;
                    }
                    true
                });
            }
        }
        let complexity = complexity_of(ex, steps, notions.iter().filter(|n| **n).count());
        Measures { steps, complexity, found }
    }

    /// [`reasoning_steps`] of `text`, handing every other phrase found to `other(list, index)`.
    fn steps(&self, text: &str, mut other: impl FnMut(usize, usize)) -> usize {
        let (code, mut steps) = code_and_numbered_lines(text);
        self.phrases.scan(text, |list, index, start| match list {
            0 if in_ranges(&code, start) => false,
            0 => {
                steps += 1;
                true
            }
            _ => {
                other(list, index);
                true
            }
        });
        steps
    }
}

/// Byte ranges of a text's fence lines and the code between them, in order; and the numbered
/// lines outside code blocks.
fn code_and_numbered_lines(text: &str) -> (Vec<Range<usize>>, usize) {
    let (mut code, mut numbered) = (Vec::new(), 0);
    let fenced = may_have_fences(text);
    let (mut inside, mut at) = (false, 0);
    for raw in text.split_inclusive('\n') {
        // As `str::lines` cuts them: without `\n` or `\r\n`.
        let line = raw.strip_suffix('\n').map_or(raw, |l| l.strip_suffix('\r').unwrap_or(l));
        let range = at..at + raw.len();
        at += raw.len();
        if fenced && is_fence(line) {
            inside = !inside;
            code.push(range);
        } else if inside {
            code.push(range);
        } else {
            numbered += is_numbered(line) as usize;
        }
    }
    (code, numbered)
}

fn in_ranges(ranges: &[Range<usize>], at: usize) -> bool {
    ranges.get(ranges.partition_point(|r| r.end <= at)).is_some_and(|r| r.contains(&at))
}

/// Whether a line starts with a list number: `1. `, `12) `.
fn is_numbered(line: &str) -> bool {
    let t = line.trim_start();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && digits < 3 && t[digits..].starts_with(['.', ')']) && t[digits + 1..].starts_with(' ')
}

/// Numbered lines (`1.`, `2)`), `Step N`, and sentence-initial ordinals (`First,` `Then,` …)
/// plus causal links (`because`, `therefore`, …) outside code blocks: the steps of a line of
/// reasoning.
pub fn reasoning_steps(text: &str) -> usize {
    PLAIN.steps(text, |_, _| {})
}

/// Task complexity 1 (trivial) to 10 (hard): how long the exchange is, how much code it holds,
/// how many reasoning steps and distinct technical notions it uses, turns beyond one, and
/// whether it corrects a mistake.
pub fn complexity(ex: &Example) -> u8 {
    PLAIN.measure(ex).complexity
}

fn complexity_of(ex: &Example, steps: usize, notions: usize) -> u8 {
    // Measured over the messages joined by newlines, one message at a time.
    let chars = ex.messages.iter().map(|m| m.content.chars().count()).sum::<usize>() + ex.messages.len().saturating_sub(1);
    let mut c = 1u32;
    c += [300, 1000, 3000].iter().filter(|&&n| chars > n).count() as u32;
    let fences: usize = ex.messages.iter().map(|m| fence_count(&m.content)).sum();
    c += (fences >= 2) as u32 + (fences >= 6) as u32;
    c += (steps >= 2) as u32 + (steps >= 5) as u32;
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
        Tally {
            score: base,
            ..Default::default()
        }
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
        messages: vec![
            Message {
                role: Role::User,
                content: prompt.into(),
            },
            Message {
                role: Role::Assistant,
                content: answer.into(),
            },
        ],
        rejected: None,
        provenance: "test#1".into(),
        metadata: String::new(),
    }
}
