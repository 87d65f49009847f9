//! Checks everything a plugin returns and converts it into the host's own types.
//!
//! Each failure is a sentence naming what was wrong and where (`example 3: …`); the runtime
//! wraps it into `PluginError::Malformed` with the plugin's name.

use super::bindings::source::exports::sam::plugin::collector::Batch;
use super::bindings::wit;
use super::SourceBatch;
use crate::example::{Example, Kind, Message, Role, Verdict};

/// Longest message content (and rejected response).
pub const MAX_CONTENT: usize = 1 << 20;
/// Most messages in one example.
pub const MAX_MESSAGES: usize = 1024;
pub const MAX_TASK: usize = 128;
pub const MAX_PROVENANCE: usize = 4096;
pub const MAX_METADATA: usize = 64 * 1024;
pub const MAX_CHECKPOINT: usize = 16 << 20;
/// Most text bytes one batch carries, all its examples together.
pub const MAX_BATCH_BYTES: usize = 64 << 20;
/// Longest flag, rule, fired entry or discard reason.
pub const MAX_LABEL: usize = 256;
pub const MAX_LABELS: usize = 256;
pub const MAX_REJECT_REASON: usize = 4096;

fn kind(k: wit::Kind) -> Kind {
    match k {
        wit::Kind::Chat => Kind::Chat,
        wit::Kind::Completion => Kind::Completion,
        wit::Kind::Preference => Kind::Preference,
        wit::Kind::Correction => Kind::Correction,
        wit::Kind::Reasoning => Kind::Reasoning,
        wit::Kind::Routing => Kind::Routing,
        wit::Kind::Principle => Kind::Principle,
    }
}

fn kind_to_wit(k: Kind) -> wit::Kind {
    match k {
        Kind::Chat => wit::Kind::Chat,
        Kind::Completion => wit::Kind::Completion,
        Kind::Preference => wit::Kind::Preference,
        Kind::Correction => wit::Kind::Correction,
        Kind::Reasoning => wit::Kind::Reasoning,
        Kind::Routing => wit::Kind::Routing,
        Kind::Principle => wit::Kind::Principle,
    }
}

fn role(r: wit::Role) -> Role {
    match r {
        wit::Role::System => Role::System,
        wit::Role::User => Role::User,
        wit::Role::Assistant => Role::Assistant,
        wit::Role::Tool => Role::Tool,
    }
}

fn role_to_wit(r: Role) -> wit::Role {
    match r {
        Role::System => wit::Role::System,
        Role::User => wit::Role::User,
        Role::Assistant => wit::Role::Assistant,
        Role::Tool => wit::Role::Tool,
    }
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{what} is {} bytes, over the limit of {max}", s.len()));
    }
    Ok(())
}

/// Validates one example from a plugin and converts it.
pub fn example(e: wit::Example) -> Result<Example, String> {
    if e.task.trim().is_empty() {
        return Err("task is empty".into());
    }
    check_len("task", &e.task, MAX_TASK)?;
    if e.provenance.trim().is_empty() {
        return Err("provenance is empty".into());
    }
    check_len("provenance", &e.provenance, MAX_PROVENANCE)?;
    if e.messages.is_empty() {
        return Err("it has no messages".into());
    }
    if e.messages.len() > MAX_MESSAGES {
        return Err(format!("it has {} messages, over the limit of {MAX_MESSAGES}", e.messages.len()));
    }
    let mut messages = Vec::with_capacity(e.messages.len());
    for (i, m) in e.messages.into_iter().enumerate() {
        if m.content.trim().is_empty() {
            return Err(format!("message {} ({:?}) is empty", i + 1, role(m.role).as_str()));
        }
        check_len(&format!("message {}", i + 1), &m.content, MAX_CONTENT)?;
        messages.push(Message { role: role(m.role), content: m.content });
    }
    let kind = kind(e.kind);
    if let Some(r) = &e.rejected {
        check_len("rejected response", r, MAX_CONTENT)?;
    }
    if kind == Kind::Preference && e.rejected.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Err("a preference example needs a non-empty `rejected` response".into());
    }
    check_len("metadata", &e.metadata, MAX_METADATA)?;
    let metadata = if e.metadata.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        match serde_json::from_str::<serde_json::Value>(&e.metadata) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Err("metadata is JSON but not an object".into()),
            Err(err) => return Err(format!("metadata is not valid JSON: {err}")),
        }
    };
    Ok(Example { kind, task: e.task, messages, rejected: e.rejected, provenance: e.provenance, metadata })
}

pub fn source_batch(_plugin: &str, b: Batch, max: u32) -> Result<SourceBatch, String> {
    if b.examples.len() > max as usize {
        return Err(format!("a batch of {} examples when at most {max} were asked for", b.examples.len()));
    }
    let text = |e: &wit::Example| {
        e.task.len() + e.provenance.len() + e.metadata.len() + e.rejected.as_ref().map_or(0, String::len) + e.messages.iter().map(|m| m.content.len()).sum::<usize>()
    };
    let total: usize = b.examples.iter().map(text).sum();
    if total > MAX_BATCH_BYTES {
        return Err(format!("a batch of {} MiB of text, over the limit of {} MiB: return fewer examples per batch", total >> 20, MAX_BATCH_BYTES >> 20));
    }
    let mut examples = Vec::with_capacity(b.examples.len());
    for (i, e) in b.examples.into_iter().enumerate() {
        let prov = crate::capability::truncate_str(&e.provenance, 200).to_string();
        examples.push(example(e).map_err(|w| format!("example {} of the batch (provenance `{prov}`): {w}", i + 1))?);
    }
    if b.discarded.len() > MAX_LABELS {
        return Err(format!("{} discard reasons, over the limit of {MAX_LABELS}", b.discarded.len()));
    }
    let mut discarded = Vec::with_capacity(b.discarded.len());
    for d in b.discarded {
        if d.reason.trim().is_empty() {
            return Err("a discard reason is empty".into());
        }
        check_len("discard reason", &d.reason, MAX_LABEL)?;
        discarded.push((d.reason, d.count));
    }
    if let Some(c) = &b.checkpoint {
        check_len("checkpoint", c, MAX_CHECKPOINT)?;
    }
    Ok(SourceBatch { examples, discarded, checkpoint: b.checkpoint })
}

/// The WIT form of a host example, for filters.
pub fn to_wit(e: &Example) -> wit::Example {
    wit::Example {
        kind: kind_to_wit(e.kind),
        task: e.task.clone(),
        messages: e.messages.iter().map(|m| wit::Message { role: role_to_wit(m.role), content: m.content.clone() }).collect(),
        rejected: e.rejected.clone(),
        provenance: e.provenance.clone(),
        metadata: match &e.metadata {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            v => v.to_string(),
        },
    }
}

fn labels(what: &str, v: &[String]) -> Result<(), String> {
    if v.len() > MAX_LABELS {
        return Err(format!("{} {what}, over the limit of {MAX_LABELS}", v.len()));
    }
    for l in v {
        check_len(what, l, MAX_LABEL)?;
    }
    Ok(())
}

pub fn verdict(v: wit::Verdict) -> Result<Verdict, String> {
    if !v.score.is_finite() || !(0.0..=1.0).contains(&v.score) {
        return Err(format!("score {} is not in [0, 1]", v.score));
    }
    if !(1..=10).contains(&v.complexity) {
        return Err(format!("complexity {} is not in 1..=10", v.complexity));
    }
    labels("flags", &v.flags)?;
    labels("fired rules", &v.fired)?;
    check_len("rule", &v.rule, MAX_LABEL)?;
    if let Some(r) = &v.reject_reason {
        check_len("reject reason", r, MAX_REJECT_REASON)?;
    }
    Ok(Verdict {
        score: v.score,
        flags: v.flags,
        complexity: v.complexity,
        reject_reason: v.reject_reason,
        rule: v.rule,
        fired: v.fired,
    })
}

pub fn verdicts(vs: Vec<wit::Verdict>, expected: usize) -> Result<Vec<Verdict>, String> {
    if vs.len() != expected {
        return Err(format!("{} verdicts for {expected} examples (a filter must return exactly one per example)", vs.len()));
    }
    vs.into_iter()
        .enumerate()
        .map(|(i, v)| verdict(v).map_err(|w| format!("verdict {}: {w}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> wit::Example {
        wit::Example {
            kind: wit::Kind::Chat,
            task: "t".into(),
            messages: vec![wit::Message { role: wit::Role::User, content: "hi".into() }],
            rejected: None,
            provenance: "p".into(),
            metadata: String::new(),
        }
    }

    fn v() -> wit::Verdict {
        wit::Verdict { score: 0.5, flags: vec![], complexity: 3, reject_reason: None, rule: "r".into(), fired: vec![] }
    }

    #[test]
    fn a_batch_is_bounded_in_bytes_as_a_whole() {
        let big = |n: usize| {
            let mut e = ex();
            e.messages[0].content = "x".repeat(n);
            e
        };
        // 80 examples of 1 MiB each: every one within MAX_CONTENT, together over the batch cap.
        let batch = Batch { examples: (0..80).map(|_| big(MAX_CONTENT)).collect(), discarded: vec![], checkpoint: None };
        let err = source_batch("p", batch, 256).unwrap_err();
        assert!(err.contains("over the limit of 64 MiB"), "{err}");
        let batch = Batch { examples: (0..8).map(|_| big(MAX_CONTENT)).collect(), discarded: vec![], checkpoint: None };
        assert_eq!(source_batch("p", batch, 256).unwrap().examples.len(), 8);
    }

    #[test]
    fn good_example_converts() {
        let e = example(ex()).unwrap();
        assert_eq!(e.metadata, serde_json::json!({}));
        assert_eq!(to_wit(&e).messages.len(), 1);
    }

    #[test]
    fn bad_examples_are_refused() {
        let mut e = ex();
        e.messages.clear();
        assert!(example(e).unwrap_err().contains("no messages"));
        let mut e = ex();
        e.messages[0].content = "  ".into();
        assert!(example(e).unwrap_err().contains("empty"));
        let mut e = ex();
        e.metadata = "[1]".into();
        assert!(example(e).unwrap_err().contains("not an object"));
        let mut e = ex();
        e.metadata = "{".into();
        assert!(example(e).unwrap_err().contains("not valid JSON"));
        let mut e = ex();
        e.messages[0].content = "x".repeat(MAX_CONTENT + 1);
        assert!(example(e).unwrap_err().contains("over the limit"));
        let mut e = ex();
        e.kind = wit::Kind::Preference;
        assert!(example(e).unwrap_err().contains("rejected"));
    }

    #[test]
    fn bad_verdicts_are_refused() {
        assert!(verdict(v()).is_ok());
        let mut x = v();
        x.score = f32::NAN;
        assert!(verdict(x).is_err());
        let mut x = v();
        x.score = 1.5;
        assert!(verdict(x).is_err());
        let mut x = v();
        x.complexity = 0;
        assert!(verdict(x).is_err());
        let mut x = v();
        x.complexity = 11;
        assert!(verdict(x).is_err());
        assert!(verdicts(vec![v()], 2).unwrap_err().contains("1 verdicts for 2"));
    }
}
