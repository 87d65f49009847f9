//! Normalizing and scrubbing one example, field by field, before anything is stored.

use std::collections::BTreeMap;

use brain_curate::{ScrubConfig, ScrubCounts, Scrubber, UserRule};

use crate::config::ScrubSection;
use crate::example::Example;

/// The scrubber for a config's `[scrub]` section.
pub fn scrubber(section: &ScrubSection) -> Result<Scrubber, brain_curate::ScrubError> {
    Scrubber::new(&scrub_config(section))
}

pub fn scrub_config(section: &ScrubSection) -> ScrubConfig {
    ScrubConfig {
        emails: section.emails,
        home_paths: section.home_paths,
        rules: section
            .rules
            .iter()
            .map(|r| UserRule { id: r.id.clone(), regex: r.regex.clone(), keywords: r.keywords.clone(), entropy: r.entropy.unwrap_or(0.0) })
            .collect(),
        allow: section.allowlist.clone(),
        extra_rules: section.extra_rules.clone(),
        ..ScrubConfig::default()
    }
}

/// Line endings as `\n`, no NUL or other control characters but tab and newline. Content is
/// otherwise kept as written (indentation and spacing matter in code).
pub fn normalize_text(text: &mut String) {
    if !text.bytes().any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f) {
        return;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    *text = out;
}

/// Normalizes every text field of `ex` in place (metadata `null` becomes `{}`).
pub fn normalize(ex: &mut Example) {
    for m in &mut ex.messages {
        normalize_text(&mut m.content);
    }
    if let Some(r) = &mut ex.rejected {
        normalize_text(r);
    }
    normalize_text(&mut ex.task);
    normalize_text(&mut ex.provenance);
    if ex.metadata.is_null() {
        ex.metadata = serde_json::Value::Object(Default::default());
    }
}

/// Scrubs every string the example carries — messages, the rejected answer, task, provenance,
/// and every key and string value of its metadata — and returns how many secrets each rule
/// redacted.
pub fn scrub(scrubber: &Scrubber, ex: &mut Example) -> BTreeMap<String, u32> {
    let mut counts = ScrubCounts::default();
    for m in &mut ex.messages {
        scrubber.scrub_in_place(&mut m.content, &mut counts);
    }
    if let Some(r) = &mut ex.rejected {
        scrubber.scrub_in_place(r, &mut counts);
    }
    scrubber.scrub_in_place(&mut ex.task, &mut counts);
    scrubber.scrub_in_place(&mut ex.provenance, &mut counts);
    scrub_json(scrubber, &mut ex.metadata, &mut counts);
    counts.iter().map(|(k, n)| (k.to_string(), n)).collect()
}

/// Scrubs a free text (an edit typed during review).
pub fn scrub_text(scrubber: &Scrubber, text: &mut String) -> BTreeMap<String, u32> {
    let mut counts = ScrubCounts::default();
    normalize_text(text);
    scrubber.scrub_in_place(text, &mut counts);
    counts.iter().map(|(k, n)| (k.to_string(), n)).collect()
}

fn scrub_json(scrubber: &Scrubber, v: &mut serde_json::Value, counts: &mut ScrubCounts) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            normalize_text(s);
            scrubber.scrub_in_place(s, counts);
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub_json(scrubber, x, counts)),
        Value::Object(map) => {
            let dirty = map.keys().any(|k| !scrubber.is_clean(k));
            if dirty {
                let old = std::mem::take(map);
                for (mut k, mut x) in old {
                    scrubber.scrub_in_place(&mut k, counts);
                    scrub_json(scrubber, &mut x, counts);
                    map.insert(k, x);
                }
            } else {
                map.values_mut().for_each(|x| scrub_json(scrubber, x, counts));
            }
        }
        _ => {}
    }
}

/// The text near-duplicate detection compares: the last exchange — from the last user message
/// to the end, then the rejected answer. Earlier turns are context: consecutive examples of one
/// conversation share them and are not copies of each other.
pub fn dedup_text(ex: &Example) -> String {
    let from = ex.messages.iter().rposition(|m| m.role == crate::example::Role::User).unwrap_or(0);
    let mut text = String::new();
    for m in &ex.messages[from..] {
        text.push_str(&m.content);
        text.push('\n');
    }
    if let Some(r) = &ex.rejected {
        text.push_str(r);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Kind, Message, Role};

    #[test]
    fn every_field_is_scrubbed_and_counted() {
        let s = scrubber(&ScrubSection::default()).unwrap();
        let tok = "ghp_R4nd0mT0k3nW1thTh1rtySixCh4rsXyZ01234";
        let mut ex = Example {
            kind: Kind::Preference,
            task: "t".into(),
            messages: vec![
                Message { role: Role::User, content: format!("use {tok}\r\nplease\0") },
                Message { role: Role::Assistant, content: "ok".into() },
            ],
            rejected: Some(format!("token {tok}")),
            provenance: format!("https://bob:{tok}@github.com/x/y@abc"),
            metadata: serde_json::json!({"cmd": format!("export GITHUB_TOKEN={tok}"), "list": [tok], tok: 1}),
        };
        normalize(&mut ex);
        let counts = scrub(&s, &mut ex);
        let all = serde_json::to_string(&ex).unwrap();
        assert!(!all.contains(tok), "{all}");
        assert!(counts.values().sum::<u32>() >= 6, "{counts:?}");
        assert_eq!(ex.messages[0].content, "use [REDACTED:github-token]\nplease");
        // Idempotent.
        let again = scrub(&s, &mut ex);
        assert!(again.is_empty(), "{again:?}");
    }
}
