//! The fast text measures (one automaton pass, integer trigrams, no copies) against plain
//! implementations written the obvious way — lower-case the text, scan it once per phrase — on
//! generated texts that mix the phrases, code fences, list numbers, case and non-ASCII words.

use sam_plugin::filter::{Example, Kind, Message, Role};

use super::*;
use crate::text::{self, complexity, is_fence, reasoning_steps, Phrases, STEP_MARKERS, TECHNICAL};

/// xorshift64: deterministic texts without a dependency.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len())]
    }

    /// A text of `pieces` parts: words, phrases of every list (some upper-cased), fences,
    /// numbered lines, punctuation and line breaks.
    fn text(&mut self, pieces: usize) -> String {
        let words = [
            "the",
            "cache",
            "Thread",
            "naïve",
            "über",
            "data",
            "x",
            "and",
            "lock",
            "BECAUSE",
            "İstanbul",
            "ok.",
        ];
        let mut out = String::new();
        for _ in 0..pieces {
            let piece = match self.next(10) {
                0 => self.pick(STEP_MARKERS).to_string(),
                1 => self.pick(TECHNICAL).to_uppercase(),
                2 => {
                    let list = [REFUSAL, CORRECTION, HEDGES, OUTDATED, UNSOURCED][self.next(5)];
                    self.pick(list).to_string()
                }
                3 => self.pick(&["\n```rust\n", "\n~~~\n", "\n  ```\n"]).to_string(),
                4 => format!("\n{}{} ", self.next(120), self.pick(&[".", ")", ":"])),
                5 => self.pick(&["\n", "\r\n", "\n\n", ". ", ", "]).to_string(),
                6 => self.pick(PRINCIPLE_STARTS).to_uppercase(),
                _ => self.pick(&words).to_string(),
            };
            out.push_str(&piece);
            out.push(' ');
        }
        out
    }
}

fn plain_count(lower: &str, needles: &[&str]) -> usize {
    needles.iter().map(|n| lower.matches(n).count()).sum()
}

fn plain_reasoning_steps(text: &str) -> usize {
    let (mut prose, mut inside) = (String::new(), false);
    for line in text.lines() {
        if is_fence(line) {
            inside = !inside;
        } else if !inside {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let numbered = prose
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
            digits > 0 && digits < 3 && t[digits..].starts_with(['.', ')']) && t[digits + 1..].starts_with(' ')
        })
        .count();
    numbered + plain_count(&prose.to_lowercase(), STEP_MARKERS)
}

fn plain_complexity(ex: &Example) -> u8 {
    let all = ex.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    let lower = all.to_lowercase();
    let fences = all.lines().filter(|l| is_fence(l)).count();
    let steps = plain_reasoning_steps(text::response(ex));
    let notions = TECHNICAL.iter().filter(|t| lower.contains(*t)).count();
    let mut c = 1 + [300, 1000, 3000].iter().filter(|&&n| all.chars().count() > n).count() as u32;
    c += (fences >= 2) as u32 + (fences >= 6) as u32 + (steps >= 2) as u32 + (steps >= 5) as u32;
    c += (notions >= 2) as u32 + (notions >= 5) as u32;
    c += (ex.messages.iter().filter(|m| m.role == Role::User).count() > 1) as u32 + (ex.kind == Kind::Correction) as u32;
    c.clamp(1, 10) as u8
}

fn plain_looks_truncated(text: &str) -> bool {
    if text.lines().filter(|l| is_fence(l)).count() % 2 == 1 {
        return true;
    }
    let t = text.trim_end();
    let Some(last_line) = t.lines().last() else {
        return false;
    };
    if is_fence(last_line) {
        return false;
    }
    if t.ends_with("...") || t.ends_with('…') || t.ends_with([',', ':', ';', '(', '[', '{', '-', '–', '—', '&', '\\', '=']) {
        return true;
    }
    let last_word = last_line.split_whitespace().last().unwrap_or("");
    [
        "and", "or", "but", "the", "a", "an", "to", "of", "with", "for", "because", "which", "that", "in", "on", "at", "by", "from",
    ]
    .iter()
    .chain(&["is", "are", "was", "if", "then", "so", "as", "into", "than"])
    .any(|w| *w == last_word.to_lowercase())
}

fn plain_repetition_ratio(lower: &str) -> f32 {
    let words = text::words(lower);
    if words.len() < 10 {
        return 0.0;
    }
    let grams: Vec<&[&str]> = words.windows(3).collect();
    let mut distinct = grams.clone();
    distinct.sort_unstable();
    distinct.dedup();
    1.0 - distinct.len() as f32 / grams.len() as f32
}

fn plain_has_principles(response: &str) -> bool {
    response.lines().chain(response.split(". ")).any(|s| {
        let s = s
            .trim_start_matches(|c: char| c.is_whitespace() || c == '-' || c == '*')
            .to_lowercase();
        PRINCIPLE_STARTS.iter().any(|p| s.starts_with(p))
    })
}

#[test]
fn a_phrase_is_counted_as_str_matches_counts_it() {
    // Occurrences of one phrase do not overlap (`str::matches`); those of different phrases may.
    let p = Phrases::new(&[&["aba"], &["bab"]]);
    assert_eq!(p.count("ababa"), ["ababa".matches("aba").count(), "ababa".matches("bab").count()]);
    assert_eq!(p.count("ABABA xaba"), [2, 1]);
    // An occurrence that does not count does not hide the next one.
    let mut starts = Vec::new();
    p.scan("ababa", |list, _, start| {
        starts.push((list, start));
        start > 0
    });
    assert_eq!(starts, [(0, 0), (1, 1), (0, 2)]);
    for list in [
        REFUSAL,
        CORRECTION,
        HEDGES,
        OUTDATED,
        UNSOURCED,
        STEP_MARKERS,
        TECHNICAL,
        PRINCIPLE_STARTS,
    ] {
        assert!(
            list.iter().all(|p| p.is_ascii() && p.to_ascii_lowercase() == *p),
            "{list:?} must be lower-case ASCII"
        );
    }
}

#[test]
fn fast_measures_match_plain_ones_on_generated_texts() {
    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    let lists = [REFUSAL, CORRECTION, HEDGES, OUTDATED, UNSOURCED];
    let phrases = Phrases::new(&lists);
    let scanner = text::Scanner::new(&lists);
    for case in 0..1200 {
        let mut text = g.text(1 + case % 150);
        if case % 2 == 0 {
            // ASCII texts take the byte-level paths.
            text.retain(|c| c.is_ascii());
        }
        let lower = text.to_lowercase();
        let plain_words: Vec<&str> = text
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty())
            .collect();
        assert_eq!(text::words(&text), plain_words, "words of {text:?}");
        assert_eq!(text::looks_truncated(&text), plain_looks_truncated(&text), "truncation of {text:?}");
        let counts = phrases.count(&text);
        for (i, list) in lists.iter().enumerate() {
            assert_eq!(counts[i], plain_count(&lower, list), "list {i} in {text:?}");
        }
        assert_eq!(reasoning_steps(&text), plain_reasoning_steps(&text), "steps in {text:?}");
        assert_eq!(repetition_ratio(&lower), plain_repetition_ratio(&lower), "repetition in {text:?}");
        assert_eq!(
            has_principles(&serde_json::Value::Null, &text),
            plain_has_principles(&text),
            "principles in {text:?}"
        );
        let turns = 2 + 2 * (case % 2);
        let ex = Example {
            kind: if case % 7 == 0 { Kind::Correction } else { Kind::Chat },
            task: "t".into(),
            messages: (0..turns)
                .map(|t| Message {
                    role: if t % 2 == 0 { Role::User } else { Role::Assistant },
                    content: g.text(1 + (case * 7 + t) % 120),
                })
                .collect(),
            rejected: None,
            provenance: "p".into(),
            metadata: String::new(),
        };
        assert_eq!(complexity(&ex), plain_complexity(&ex), "complexity of {ex:?}");
        let m = scanner.measure(&ex);
        let resp = text::response(&ex);
        let plain_found: Vec<usize> = lists.iter().map(|l| plain_count(&resp.to_lowercase(), l)).collect();
        assert_eq!(
            (m.steps, m.complexity, m.found),
            (plain_reasoning_steps(resp), plain_complexity(&ex), plain_found),
            "{ex:?}"
        );
    }
}
