//! Secret scrubbing in the style of gitleaks.
//!
//! The rules are data: `rules.toml`, in a format users extend with `[scrub] extra_rules`. Each
//! rule has keywords, a regex whose secret group is replaced, a minimum Shannon entropy, an
//! allow-list and sometimes an extra check. One Aho-Corasick pass over the text finds where
//! rules' keywords occur. An anchored rule's matches start with one of its keywords, so its regex
//! is only tried, anchored, at those positions: the text is scanned once, whatever the number of
//! rules. (Other rules scan only texts holding one of their keywords.) Matches that are
//! allowlisted, hold a stopword (`EXAMPLE`, `xxxx`, `<your-token>`…) or sit inside an earlier `[REDACTED:…]` marker are
//! kept. The secret is replaced with `[REDACTED:<rule-id>]`; the result is a fixpoint, so
//! scrubbing twice changes nothing. Only counts per rule are reported, never the secrets.
//!
//! ```
//! use brain_curate::{ScrubConfig, Scrubber};
//! let scrubber = Scrubber::new(&ScrubConfig::default()).unwrap();
//! let out = scrubber.scrub("export GITHUB_TOKEN=ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234");
//! assert_eq!(out.text, "export GITHUB_TOKEN=[REDACTED:github-token]");
//! assert_eq!(out.counts.get("github-token"), 1);
//! ```

mod check;
mod rules;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet};
use regex_automata::meta;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input};
use serde::{Deserialize, Serialize};

pub use check::shannon_entropy;
use check::Check;

/// The text that replaces a secret: `[REDACTED:<rule-id>]`.
pub fn marker(rule_id: &str) -> String {
    format!("[REDACTED:{rule_id}]")
}

const MARKER_PREFIX: &[u8] = b"[REDACTED:";

/// Scrubbing settings: the `[scrub]` table of brain.toml.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrubConfig {
    /// Also redact email addresses (rule `email`).
    pub emails: bool,
    /// Also redact the user name in home-directory paths, `/home/NAME`, `/Users/NAME`,
    /// `C:\Users\NAME` (rule `home-path`).
    pub home_paths: bool,
    /// Built-in rule ids to turn off.
    pub disable: Vec<String>,
    /// Extra rules, run after the built-in ones.
    pub rules: Vec<UserRule>,
    /// A rules file in the built-in `rules.toml` format (`[[rule]]` tables), run after the
    /// built-in rules and before `rules`.
    pub extra_rules: Option<PathBuf>,
    /// Regexes; a secret matching any of them (anywhere in it) is kept.
    pub allow: Vec<String>,
    /// Exact values that are kept.
    pub allow_values: Vec<String>,
    /// Extra stopwords (case-insensitive substrings marking a placeholder), added to the built-in ones.
    pub stopwords: Vec<String>,
}

/// A rule from the config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRule {
    /// Lower-case letters, digits and dashes; appears in `[REDACTED:<id>]` and in the counts.
    pub id: String,
    /// The secret is the group named `secret`, else group 1, else the whole match.
    pub regex: String,
    /// The regex runs only on text containing one of these (ASCII case-insensitive); empty means
    /// it runs on every text.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    #[serde(default)]
    pub entropy: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScrubError {
    #[error("scrub rule `{rule}`: invalid regex: {message}")]
    BadRegex { rule: String, message: String },
    #[error("scrub allowlist entry `{pattern}`: invalid regex: {message}")]
    BadAllow { pattern: String, message: String },
    #[error("scrub rule id `{0}` must be lower-case letters, digits and dashes")]
    BadId(String),
    #[error("scrub rule id `{0}` is defined twice (user rules cannot reuse a built-in id)")]
    DuplicateRule(String),
    #[error("scrub.disable names `{0}`, which is not a built-in rule; known rules: {1}")]
    UnknownRule(String, String),
    #[error("scrub extra_rules file {path}: {message}")]
    RulesFile { path: String, message: String },
}

/// How many secrets each rule redacted. Serializes as a JSON object `{rule-id: count}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScrubCounts(BTreeMap<String, u32>);

impl ScrubCounts {
    pub fn add(&mut self, rule: &str, n: u32) {
        if n > 0 {
            *self.0.entry(rule.to_string()).or_insert(0) += n;
        }
    }
    pub fn merge(&mut self, other: &ScrubCounts) {
        for (rule, &n) in &other.0 {
            self.add(rule, n);
        }
    }
    pub fn get(&self, rule: &str) -> u32 {
        self.0.get(rule).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(k, &v)| (k.as_str(), v))
    }
}

/// A scrubbed text and what was redacted in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scrubbed<'a> {
    /// Borrowed when nothing was redacted.
    pub text: Cow<'a, str>,
    pub counts: ScrubCounts,
}

struct Rule {
    id: String,
    regex: meta::Regex,
    /// The rule's own allow-list (documented example values).
    allow: Option<RegexSet>,
    /// Tried only at its keywords' positions (matches start with a keyword).
    anchored: bool,
    entropy: f64,
    check: Check,
    /// Capture group index of the secret (0 = whole match), or `None` for "first participating".
    group: Option<usize>,
    /// For `HEAD{near}VALUE` rules, `regex` is HEAD and this is VALUE, searched in the two lines
    /// after HEAD's match.
    near_value: Option<meta::Regex>,
}

/// One match to redact.
#[derive(Clone, Copy, Debug)]
struct Hit {
    start: usize,
    end: usize,
    rule: usize,
}

/// Compiled rules. Build once, share across threads (`Send + Sync`).
pub struct Scrubber {
    rules: Vec<Rule>,
    keywords: AhoCorasick,
    /// For each keyword pattern, the rules it enables.
    keyword_rules: Vec<Vec<usize>>,
    /// Rules without keywords: they run on every text.
    always: Vec<usize>,
    allow: Option<RegexSet>,
    allow_values: HashSet<String>,
    stopwords: Vec<String>,
}

impl Scrubber {
    pub fn new(config: &ScrubConfig) -> Result<Self, ScrubError> {
        let builtin = rules::builtin();
        let known: Vec<&str> = builtin.iter().map(|r| r.id.as_str()).collect();
        if let Some(unknown) = config.disable.iter().find(|d| !known.contains(&d.as_str())) {
            return Err(ScrubError::UnknownRule(unknown.clone(), known.join(", ")));
        }
        let extra = match &config.extra_rules {
            None => Vec::new(),
            Some(path) => {
                let fail = |message: String| ScrubError::RulesFile { path: path.display().to_string(), message };
                let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
                let extra = rules::parse(&text).map_err(fail)?;
                for spec in &extra {
                    check_user_id(&spec.id, &known)?;
                    if extra.iter().filter(|r| r.id == spec.id).count() > 1 || config.rules.iter().any(|r| r.id == spec.id) {
                        return Err(ScrubError::DuplicateRule(spec.id.clone()));
                    }
                }
                extra
            }
        };
        let mut rules = Vec::new();
        let mut keywords: Vec<String> = Vec::new();
        let mut keyword_rules: Vec<Vec<usize>> = Vec::new();
        let mut always = Vec::new();
        let mut add_keywords = |rule: usize, words: &mut dyn Iterator<Item = String>| {
            let mut any = false;
            for word in words {
                any = true;
                match keywords.iter().position(|k| *k == word) {
                    Some(i) => keyword_rules[i].push(rule),
                    None => {
                        keywords.push(word);
                        keyword_rules.push(vec![rule]);
                    }
                }
            }
            any
        };
        let enabled = |id: &str| {
            (match id {
                rules::EMAIL => config.emails,
                rules::HOME_PATH => config.home_paths,
                _ => true,
            }) && !config.disable.iter().any(|d| d == id)
        };
        for spec in builtin.iter().filter(|s| enabled(&s.id)).chain(extra.iter()) {
            let bad_regex = |message: String| ScrubError::BadRegex { rule: spec.id.clone(), message };
            let (regex, near_value) = match spec.near_split().filter(|_| spec.anchored && !spec.keywords.is_empty()) {
                Some((head, value)) => (
                    meta::Regex::new(&head).map_err(|e| bad_regex(e.to_string()))?,
                    Some(meta::Regex::new(&value).map_err(|e| bad_regex(e.to_string()))?),
                ),
                None => (meta::Regex::new(&spec.expanded_regex()).map_err(|e| bad_regex(e.to_string()))?, None),
            };
            let allow = if spec.allow.is_empty() {
                None
            } else {
                Some(RegexSet::new(&spec.allow).map_err(|e| bad_regex(format!("allow: {e}")))?)
            };
            let index = rules.len();
            rules.push(Rule {
                id: spec.id.clone(),
                regex,
                allow,
                anchored: spec.anchored,
                entropy: spec.entropy,
                check: spec.check,
                group: None,
                near_value,
            });
            if !add_keywords(index, &mut spec.keywords.iter().filter(|k| !k.is_empty()).map(|k| k.to_ascii_lowercase())) {
                always.push(index);
            }
        }
        for user in &config.rules {
            check_user_id(&user.id, &known)?;
            if config.rules.iter().filter(|r| r.id == user.id).count() > 1 {
                return Err(ScrubError::DuplicateRule(user.id.clone()));
            }
            let regex = meta::Regex::new(&user.regex)
                .map_err(|e| ScrubError::BadRegex { rule: user.id.clone(), message: e.to_string() })?;
            let info = regex.group_info();
            let group = info
                .to_index(regex_automata::PatternID::ZERO, "secret")
                .or(if info.group_len(regex_automata::PatternID::ZERO) > 1 { Some(1) } else { Some(0) });
            let index = rules.len();
            rules.push(Rule {
                id: user.id.clone(),
                regex,
                allow: None,
                anchored: false,
                entropy: user.entropy,
                check: Check::None,
                group,
                near_value: None,
            });
            if !add_keywords(index, &mut user.keywords.iter().filter(|k| !k.is_empty()).map(|k| k.to_ascii_lowercase())) {
                always.push(index);
            }
        }
        // A DFA: a few hundred short keywords make a small one, and it reads each byte with one
        // table lookup (the default NFA is about half as fast on keyword-dense text).
        let keywords = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&keywords)
            .expect("keyword automaton of a few hundred short literals always builds");
        let allow = if config.allow.is_empty() {
            None
        } else {
            for pattern in &config.allow {
                Regex::new(pattern).map_err(|e| ScrubError::BadAllow { pattern: pattern.clone(), message: e.to_string() })?;
            }
            Some(RegexSet::new(&config.allow).map_err(|e| ScrubError::BadAllow {
                pattern: config.allow.join(" | "),
                message: e.to_string(),
            })?)
        };
        let stopwords = rules::STOPWORDS
            .iter()
            .map(|s| s.to_string())
            .chain(config.stopwords.iter().filter(|s| !s.is_empty()).map(|s| s.to_lowercase()))
            .collect();
        Ok(Scrubber { rules, keywords, keyword_rules, always, allow, allow_values: config.allow_values.iter().cloned().collect(), stopwords })
    }

    /// The ids of the rules in force, in priority order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Redacts every secret in `text`.
    pub fn scrub<'a>(&self, text: &'a str) -> Scrubbed<'a> {
        let mut counts = ScrubCounts::default();
        let mut current: Cow<'a, str> = Cow::Borrowed(text);
        // Redaction can expose a match that an overlapping one hid; a few passes reach the
        // fixpoint (in practice the second pass finds nothing), which makes scrubbing idempotent.
        for _ in 0..8 {
            let hits = self.find(&current);
            if hits.is_empty() {
                break;
            }
            let mut out = String::with_capacity(current.len());
            let mut last = 0;
            for hit in &hits {
                let id = &self.rules[hit.rule].id;
                out.push_str(&current[last..hit.start]);
                out.push_str("[REDACTED:");
                out.push_str(id);
                out.push(']');
                last = hit.end;
                counts.add(id, 1);
            }
            out.push_str(&current[last..]);
            current = Cow::Owned(out);
        }
        Scrubbed { text: current, counts }
    }

    /// Scrubs a string in place, adding to `counts`; returns whether anything was redacted.
    pub fn scrub_in_place(&self, text: &mut String, counts: &mut ScrubCounts) -> bool {
        let scrubbed = self.scrub(text);
        if scrubbed.counts.is_empty() {
            return false;
        }
        counts.merge(&scrubbed.counts);
        let owned = scrubbed.text.into_owned();
        *text = owned;
        true
    }

    /// Scrubs every field in place (an example's messages, rejected response, metadata text…) and
    /// returns the counts over all of them.
    pub fn scrub_fields<'s>(&self, fields: impl IntoIterator<Item = &'s mut String>) -> ScrubCounts {
        let mut counts = ScrubCounts::default();
        for field in fields {
            self.scrub_in_place(field, &mut counts);
        }
        counts
    }

    /// True when `text` holds nothing to redact (cheaper than `scrub` when it does not).
    pub fn is_clean(&self, text: &str) -> bool {
        self.find(text).is_empty()
    }

    /// The non-overlapping hits in `text`, in order.
    fn find(&self, text: &str) -> Vec<Hit> {
        let mut scan = vec![false; self.rules.len()];
        let mut hits = Vec::new();
        let mut markers: Option<Vec<(usize, usize)>> = None;
        // Captures are per regex (their group counts differ); made on first use.
        let mut caps: Vec<Option<Captures>> = (0..self.rules.len()).map(|_| None).collect();
        for m in self.keywords.find_overlapping_iter(text) {
            for &r in &self.keyword_rules[m.pattern().as_usize()] {
                let rule = &self.rules[r];
                if !rule.anchored {
                    scan[r] = true;
                    continue;
                }
                let input = Input::new(text).span(m.start()..text.len()).anchored(Anchored::Yes);
                if let Some(value) = &rule.near_value {
                    let Some(head) = rule.regex.search_half(&input) else { continue };
                    let (from, window) = near_window(text, head.offset());
                    let caps = caps[r].get_or_insert_with(|| value.create_captures());
                    value.search_captures(&Input::new(text).span(from..(window + 320).min(text.len())), caps);
                    if caps.get_match().is_some_and(|v| v.start() <= window) {
                        self.consider(text, r, caps, &mut markers, &mut hits);
                    }
                    continue;
                }
                let caps = caps[r].get_or_insert_with(|| rule.regex.create_captures());
                rule.regex.search_captures(&input, caps);
                if caps.is_match() {
                    self.consider(text, r, caps, &mut markers, &mut hits);
                }
            }
        }
        for &r in &self.always {
            scan[r] = true;
        }
        for (r, rule) in self.rules.iter().enumerate().filter(|(r, _)| scan[*r]) {
            let mut caps = rule.regex.create_captures();
            let mut at = 0;
            while at <= text.len() {
                rule.regex.search_captures(&Input::new(text).span(at..text.len()), &mut caps);
                let Some(whole) = caps.get_match() else { break };
                self.consider(text, r, &caps, &mut markers, &mut hits);
                at = if whole.end() > whole.start() { whole.end() } else { next_char(text, whole.end()) };
            }
        }
        if hits.is_empty() {
            return hits;
        }
        // Leftmost first; at the same start the longer match, then the higher-priority rule.
        hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.rule.cmp(&b.rule)));
        let mut kept: Vec<Hit> = Vec::with_capacity(hits.len());
        for hit in hits {
            if kept.last().is_none_or(|last| hit.start >= last.end) {
                kept.push(hit);
            }
        }
        kept
    }

    /// Applies a rule's secret group, entropy, check, allowlist and marker tests to one match.
    fn consider(&self, text: &str, r: usize, caps: &Captures, markers: &mut Option<Vec<(usize, usize)>>, hits: &mut Vec<Hit>) {
        let rule = &self.rules[r];
        let secret = match rule.group {
            Some(g) => caps.get_group(g),
            None => (1..caps.group_len()).find_map(|g| caps.get_group(g)).or_else(|| caps.get_match().map(|m| m.span())),
        };
        let Some(secret) = secret else { return };
        let (start, end) = (secret.start, secret.end);
        if start == end {
            return;
        }
        let value = &text[start..end];
        if (rule.entropy > 0.0 && shannon_entropy(value) < rule.entropy)
            || !rule.check.passes(text, start, end)
            || self.is_allowed(value, rule.check)
            || rule.allow.as_ref().is_some_and(|set| set.is_match(value))
        {
            return;
        }
        let markers = markers.get_or_insert_with(|| marker_spans(text));
        if markers.iter().any(|&(ms, me)| start < me && ms < end) {
            return;
        }
        hits.push(Hit { start, end, rule: r });
    }

    fn is_allowed(&self, value: &str, check: Check) -> bool {
        if self.allow_values.contains(value) {
            return true;
        }
        // A key block is a placeholder when it has no body (its check); its lines may be quoted
        // (`> `) or its base64 may spell a stopword by chance.
        let lower = value.to_lowercase();
        if check != Check::KeyBlock && self.stopwords.iter().any(|w| lower.contains(w.as_str())) {
            return true;
        }
        self.allow.as_ref().is_some_and(|set| set.is_match(value))
    }
}

/// A user rule's id: well-formed and not a built-in one.
fn check_user_id(id: &str, builtin: &[&str]) -> Result<(), ScrubError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(ScrubError::BadId(id.to_string()));
    }
    if builtin.contains(&id) {
        return Err(ScrubError::DuplicateRule(id.to_string()));
    }
    Ok(())
}

/// Where a `{near}` value may start after a keyword match ending at `from`: up to
/// `NEAR_LINE` bytes on the keyword's line, or its line and up to `NEAR_LINE` bytes of the next.
/// Returns `from` and the last start allowed (the value's leading delimiter included).
fn near_window(text: &str, from: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    let line_end = memchr::memchr(b'\n', &bytes[from..]).map_or(text.len(), |i| from + i);
    let last = if line_end - from > rules::NEAR_LINE || line_end == text.len() {
        (from + rules::NEAR_LINE).min(line_end)
    } else {
        let next = line_end + 1;
        let next_end = memchr::memchr(b'\n', &bytes[next..]).map_or(text.len(), |i| next + i);
        (next + rules::NEAR_LINE).min(next_end)
    };
    (from, last)
}

fn next_char(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(text.len() + 1, |c| at + c.len_utf8())
}

/// Byte spans of `[REDACTED:…]` markers already in the text.
fn marker_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    memchr::memmem::find_iter(bytes, MARKER_PREFIX)
        .filter_map(|start| {
            let rest = &bytes[start + MARKER_PREFIX.len()..];
            let len = rest.iter().take(64).position(|&b| b == b']')?;
            Some((start, start + MARKER_PREFIX.len() + len + 1))
        })
        .collect()
}

#[doc(hidden)]
/// The plain baseline the benchmark compares with: every rule's regex in one `RegexSet`, run on
/// every text, then the matching rules' regexes again for positions (no keyword prefilter).
pub fn regexset_baseline() -> (RegexSet, Vec<Regex>) {
    let patterns: Vec<String> =
        rules::builtin().iter().filter(|r| ![rules::EMAIL, rules::HOME_PATH].contains(&r.id.as_str())).map(|r| r.expanded_regex()).collect();
    let set = RegexSet::new(&patterns).expect("built-in rules compile");
    let regexes = patterns.iter().map(|p| Regex::new(p).expect("built-in rules compile")).collect();
    (set, regexes)
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::new(&ScrubConfig::default()).expect("the built-in rules compile")
    }
}

#[cfg(test)]
mod tests;
