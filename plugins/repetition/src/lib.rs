//! Filter plugin `repetition`: the repetition measures of Gopher (Rae et al. 2021, as in
//! datatrove's `GopherRepetitionFilter`) over an example's assistant turns, with Gopher's limits
//! by default. See README.md.
//!
//! Each measure is compared with its limit; the score is `1 − ½ · max(value / limit)` clamped to
//! [0, 1] (0.5 exactly at a limit), and an example over any limit is rejected by the measure
//! furthest over.

#[path = "../../quality/src/text.rs"]
mod text;

use std::collections::{HashMap, HashSet};

use rustc_hash::FxBuildHasher;
use sam_plugin::filter::{Example, Role, Verdict};
use serde::Deserialize;

use crate::text::{complexity, Tally};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NGramLimit {
    pub n: usize,
    pub limit: f32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Duplicate lines over all lines.
    pub dup_line_frac: f32,
    /// Duplicate paragraphs over all paragraphs.
    pub dup_para_frac: f32,
    /// Characters in duplicate lines over all characters.
    pub dup_line_char_frac: f32,
    /// Characters in duplicate paragraphs over all characters.
    pub dup_para_char_frac: f32,
    /// Characters covered by the most frequent n-gram (if it repeats) over all characters.
    pub top_ngrams: Vec<NGramLimit>,
    /// Characters in repeated n-grams over all characters.
    pub dup_ngrams: Vec<NGramLimit>,
    /// Lines shorter than this (trimmed) are not compared: `}` and blank-ish lines repeat in
    /// any code.
    pub min_line_chars: usize,
    /// The n-gram measures need at least this many words.
    pub min_words: usize,
}

impl Default for Config {
    fn default() -> Self {
        let limits = |l: &[(usize, f32)]| l.iter().map(|&(n, limit)| NGramLimit { n, limit }).collect();
        Config {
            dup_line_frac: 0.30,
            dup_para_frac: 0.30,
            dup_line_char_frac: 0.20,
            dup_para_char_frac: 0.20,
            top_ngrams: limits(&[(2, 0.20), (3, 0.18), (4, 0.16)]),
            dup_ngrams: limits(&[(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]),
            min_line_chars: 10,
            min_words: 20,
        }
    }
}

/// One measure of a text and its limit.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    pub name: String,
    pub value: f32,
    pub limit: f32,
}

/// (items, duplicates, characters in duplicates) among `items`, the first occurrence not counted.
fn duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize, usize) {
    let mut seen: HashSet<&str, FxBuildHasher> = HashSet::default();
    let (mut total, mut dups, mut chars) = (0, 0, 0);
    for item in items {
        total += 1;
        if !seen.insert(item) {
            dups += 1;
            chars += item.chars().count();
        }
    }
    (total, dups, chars)
}

/// A text's words as n-gram ids: `ids[i]` numbers the n-gram starting at word `i`, equal ids ⇔
/// equal n-grams, ids dense from 0. Level n+1 numbers the pairs (n-gram at i, word at i + n),
/// so every size costs one pass of integer-keyed lookups and the counts are plain arrays.
struct NGrams {
    n: usize,
    ids: Vec<u32>,
    /// One more than the largest id.
    distinct: usize,
    /// No two n-grams are equal (and so no two longer ones are either).
    unique: bool,
    words: Vec<u32>,
    /// `prefix[i]` = characters in the first `i` words.
    prefix: Vec<usize>,
}

impl NGrams {
    /// The unigrams of `words`.
    fn new(words: &[&str]) -> NGrams {
        let mut index: HashMap<&str, u32, FxBuildHasher> = HashMap::with_capacity_and_hasher(words.len(), FxBuildHasher);
        let mut prefix = Vec::with_capacity(words.len() + 1);
        prefix.push(0);
        let ids: Vec<u32> = words
            .iter()
            .map(|w| {
                prefix.push(prefix.last().copied().unwrap_or(0) + w.chars().count());
                let next = index.len() as u32;
                *index.entry(w).or_insert(next)
            })
            .collect();
        NGrams {
            n: 1,
            words: ids.clone(),
            distinct: index.len(),
            unique: index.len() == ids.len(),
            ids,
            prefix,
        }
    }

    /// Moves to the (n+1)-grams.
    fn grow(&mut self) {
        let mut index: HashMap<u64, u32, FxBuildHasher> = HashMap::with_capacity_and_hasher(self.ids.len(), FxBuildHasher);
        let n = self.n;
        let next: Vec<u32> = self.ids[..self.ids.len().saturating_sub(1)]
            .iter()
            .enumerate()
            .map(|(i, &gram)| {
                let key = u64::from(gram) << 32 | u64::from(self.words[i + n]);
                let fresh = index.len() as u32;
                *index.entry(key).or_insert(fresh)
            })
            .collect();
        self.unique = index.len() == next.len();
        (self.ids, self.distinct, self.n) = (next, index.len(), n + 1);
    }

    /// The n-grams of size `n` (never fewer than the current size).
    fn at(&mut self, n: usize) -> &Self {
        while self.n < n {
            if self.unique {
                // Each longer n-gram is told apart by the shorter one it starts with: the ids
                // stay valid, the last position has no longer n-gram.
                self.ids.pop();
                self.n += 1;
            } else {
                self.grow();
            }
        }
        self
    }

    /// Characters of the words `at..at + n`, not counting the spaces between them.
    fn chars(&self, at: usize) -> usize {
        self.prefix[at + self.n] - self.prefix[at]
    }

    /// Characters of the most frequent n-gram (words joined by spaces) times its count, when it
    /// occurs more than once.
    fn top_ngram_chars(&self) -> usize {
        if self.unique {
            return 0;
        }
        // Per id: (count, where it first occurs).
        let mut counts = vec![(0usize, 0usize); self.distinct];
        for (at, &id) in self.ids.iter().enumerate() {
            let c = &mut counts[id as usize];
            if c.0 == 0 {
                c.1 = at;
            }
            c.0 += 1;
        }
        counts
            .into_iter()
            .filter(|&(c, _)| c > 1)
            .map(|(c, at)| (self.chars(at) + self.n - 1) * c)
            .max()
            .unwrap_or(0)
    }

    /// Characters in n-grams seen before, scanning left to right and skipping past each repeat.
    fn dup_ngram_chars(&self) -> usize {
        if self.unique {
            return 0;
        }
        let mut seen = vec![false; self.distinct];
        let (mut at, mut chars) = (0, 0);
        while at < self.ids.len() {
            let id = self.ids[at] as usize;
            if seen[id] {
                chars += self.chars(at);
                at += self.n;
            } else {
                seen[id] = true;
                at += 1;
            }
        }
        chars
    }
}

impl Config {
    /// Every measure of `text` with its limit.
    pub fn measures(&self, text: &str) -> Vec<Measure> {
        let total_chars = text.chars().count().max(1) as f32;
        let m = |name: String, value: f32, limit: f32| Measure { name, value, limit };
        let lines = text.split('\n').map(str::trim).filter(|l| l.chars().count() >= self.min_line_chars);
        let (n_lines, dup_lines, dup_line_chars) = duplicates(lines);
        let paragraphs = text
            .split("\n\n")
            .map(str::trim)
            .filter(|p| p.chars().count() >= self.min_line_chars);
        let (n_paras, dup_paras, dup_para_chars) = duplicates(paragraphs);
        let mut out = vec![
            m("dup_line_frac".into(), dup_lines as f32 / n_lines.max(1) as f32, self.dup_line_frac),
            m("dup_para_frac".into(), dup_paras as f32 / n_paras.max(1) as f32, self.dup_para_frac),
            m(
                "dup_line_char_frac".into(),
                dup_line_chars as f32 / total_chars,
                self.dup_line_char_frac,
            ),
            m(
                "dup_para_char_frac".into(),
                dup_para_chars as f32 / total_chars,
                self.dup_para_char_frac,
            ),
        ];
        let words = text::words(text);
        if words.len() >= self.min_words {
            // Sizes in increasing order (levels only grow), measures reported in config order.
            let mut wanted: Vec<(usize, bool, usize)> = self.top_ngrams.iter().enumerate().map(|(i, l)| (l.n, true, i)).collect();
            wanted.extend(self.dup_ngrams.iter().enumerate().map(|(i, l)| (l.n, false, i)));
            wanted.sort_unstable();
            let mut top = vec![0; self.top_ngrams.len()];
            let mut dup = vec![0; self.dup_ngrams.len()];
            let mut grams = NGrams::new(&words);
            for (n, is_top, i) in wanted {
                let g = grams.at(n);
                if is_top {
                    top[i] = g.top_ngram_chars();
                } else {
                    dup[i] = g.dup_ngram_chars();
                }
            }
            for (l, chars) in self.top_ngrams.iter().zip(top) {
                out.push(m(format!("top_{}gram_char_frac", l.n), chars as f32 / total_chars, l.limit));
            }
            for (l, chars) in self.dup_ngrams.iter().zip(dup) {
                out.push(m(format!("dup_{}gram_char_frac", l.n), chars as f32 / total_chars, l.limit));
            }
        }
        out
    }
}

pub struct Repetition {
    config: Config,
}

impl Repetition {
    pub fn judge(&self, ex: &Example) -> Verdict {
        let text: String = ex
            .messages
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        let measures = self.config.measures(&text);
        let worst = measures
            .iter()
            .filter(|m| m.limit > 0.0)
            .map(|m| (m, m.value / m.limit))
            .fold(None::<(&Measure, f32)>, |best, x| {
                if best.is_some_and(|b| b.1 >= x.1) {
                    best
                } else {
                    Some(x)
                }
            });
        let mut t = Tally::new(1.0);
        for m in measures.iter().filter(|m| m.limit > 0.0 && m.value > m.limit) {
            t.fire(&m.name, -((m.value / m.limit * 50.0).round() / 100.0).min(1.0), Some("repetition"));
        }
        // The score is set by the worst measure alone, not by the sum of the changes.
        t.score = worst.map_or(1.0, |(_, ratio)| 1.0 - 0.5 * ratio);
        if let Some((m, ratio)) = worst.filter(|(_, ratio)| *ratio > 1.0) {
            t.reject(
                &m.name,
                format!("{} is {:.2}, over the limit of {:.2} ({ratio:.1}×)", m.name, m.value, m.limit),
            );
        }
        t.verdict(complexity(ex))
    }
}

impl sam_plugin::Filter for Repetition {
    fn open(config: serde_json::Value) -> Result<Self, String> {
        let config: Config = serde_json::from_value(config).map_err(|e| format!("repetition config: {e}"))?;
        if config.top_ngrams.iter().chain(&config.dup_ngrams).any(|l| l.n == 0) {
            return Err("repetition config: n-gram sizes must be ≥ 1".into());
        }
        Ok(Repetition { config })
    }

    fn evaluate(&self, example: &Example) -> Verdict {
        self.judge(example)
    }
}

sam_plugin::export_filter!(Repetition);

#[cfg(test)]
mod tests {
    use sam_plugin::filter::Kind;
    use sam_plugin::Filter;
    use serde_json::json;

    use super::*;
    use crate::text::example;

    fn judge(answer: &str) -> Verdict {
        Repetition { config: Config::default() }.judge(&example(Kind::Chat, "q", answer))
    }

    fn value(text: &str, name: &str) -> f32 {
        Config::default().measures(text).into_iter().find(|m| m.name == name).unwrap().value
    }

    const VARIED: &str = "The parser reads tokens one at a time and keeps a small stack of open brackets.\n\
        When a closing bracket arrives it pops the stack and checks that the kinds agree.\n\
        Errors carry the line and column so the message can point at the exact place.\n\
        Tests cover nested brackets, unmatched ones, and input that ends early.";

    #[test]
    fn varied_text_passes_with_a_high_score() {
        let v = judge(VARIED);
        assert!(v.reject_reason.is_none() && v.flags.is_empty() && v.fired.is_empty(), "{v:?}");
        assert!(v.score > 0.7, "{v:?}");
        assert_eq!(v.rule, "base");
    }

    #[test]
    fn duplicate_lines_and_paragraphs() {
        let text = "alpha beta gamma delta\nalpha beta gamma delta\nalpha beta gamma delta\nepsilon zeta eta theta";
        assert!((value(text, "dup_line_frac") - 0.5).abs() < 1e-6);
        let v = judge(text);
        assert!(v.reject_reason.is_some() && v.flags == ["repetition"], "{v:?}");
        assert!(v.fired.iter().any(|f| f.starts_with("dup_line_frac:-")), "{v:?}");
        let paras = "one paragraph here\n\none paragraph here\n\nanother paragraph";
        assert!((value(paras, "dup_para_frac") - 1.0 / 3.0).abs() < 1e-6);
        assert!(value(paras, "dup_para_char_frac") > 0.3);
        // Short lines (`}`) are not compared.
        let code = "fn a() {\n}\nfn b() {\n}\nfn c() {\n}\n";
        assert_eq!(value(code, "dup_line_frac"), 0.0);
    }

    #[test]
    fn ngram_measures() {
        let text = "the cat sat on the mat ".repeat(8);
        assert!(value(&text, "top_2gram_char_frac") > 0.2);
        assert!(value(&text, "dup_5gram_char_frac") > 0.5);
        let v = judge(&text);
        assert!(v.reject_reason.is_some());
        assert!(v.score < 0.5);
        // Under min_words the n-gram measures are not taken.
        assert!(Config::default().measures("a b a b").iter().all(|m| !m.name.contains("gram")));
        assert_eq!(NGrams::new(&["a", "b", "a", "b", "a", "b"]).at(2).dup_ngram_chars(), 4);
        assert_eq!(NGrams::new(&["ab", "cd", "ab", "cd"]).at(2).top_ngram_chars(), 10);
    }

    /// Gopher's n-gram measures written plainly, over the words themselves.
    fn reference_top(words: &[&str], n: usize) -> usize {
        let grams: Vec<&[&str]> = words.windows(n).collect();
        let chars = |g: &[&str]| g.iter().map(|w| w.chars().count()).sum::<usize>() + n - 1;
        grams
            .iter()
            .map(|g| grams.iter().filter(|h| h == &g).count())
            .zip(&grams)
            .filter(|(c, _)| *c > 1)
            .map(|(c, g)| chars(g) * c)
            .max()
            .unwrap_or(0)
    }

    fn reference_dup(words: &[&str], n: usize) -> usize {
        let (mut seen, mut i, mut chars) = (Vec::<&[&str]>::new(), 0, 0);
        while i + n <= words.len() {
            let gram = &words[i..i + n];
            if seen.contains(&gram) {
                chars += gram.iter().map(|w| w.chars().count()).sum::<usize>();
                i += n;
            } else {
                seen.push(gram);
                i += 1;
            }
        }
        chars
    }

    #[test]
    fn ngram_measures_match_a_plain_implementation() {
        // Texts from a small vocabulary (so n-grams repeat) with a xorshift generator.
        let vocab = ["a", "bb", "ccc", "dé", "e", "ff", "g", "hhhh"];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for len in [0, 1, 5, 20, 60, 200] {
            for _ in 0..20 {
                let words: Vec<&str> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        vocab[(x % if len > 50 { 3 } else { 8 }) as usize]
                    })
                    .collect();
                let mut grams = NGrams::new(&words);
                for n in 1..=12 {
                    let g = grams.at(n);
                    assert_eq!(g.top_ngram_chars(), reference_top(&words, n), "top {n}-grams of {words:?}");
                    assert_eq!(g.dup_ngram_chars(), reference_dup(&words, n), "dup {n}-grams of {words:?}");
                }
            }
        }
    }

    #[test]
    fn score_is_half_at_the_limit_and_rule_names_the_worst_measure() {
        let strict = Repetition::open(json!({"dup_line_frac": 0.5, "min_line_chars": 1})).unwrap();
        let v = strict.evaluate(&example(Kind::Chat, "q", "x1\nx1\ny2\nz3"));
        // dup_line_frac = 0.25 of a 0.5 limit → 1 − ½·0.5 = 0.75, unless another measure is worse.
        assert!(v.score <= 0.75 + 1e-6, "{v:?}");
        let v = strict.evaluate(&example(Kind::Chat, "q", "x1\nx1\nx1\nz3"));
        assert_eq!(v.rule, "dup_line_char_frac", "{v:?}");
        assert!(v.reject_reason.unwrap().contains("over the limit"));
        assert!(Repetition::open(json!({"typo": 1})).is_err());
        assert!(Repetition::open(json!({"top_ngrams": [{"n": 0, "limit": 0.1}]})).is_err());
    }
}
