//! One example with everything a reviewer needs: messages (and the rejected answer of a pair),
//! score, flags, rules fired, complexity, provenance, scrub counts, duplicate link, decisions.

use std::fmt::Write as _;

use serde::Serialize;

use crate::example::Verdict;
use crate::store::verdicts::Summary;
use crate::store::{Decision, Store, StoredExample};

/// Everything `brain review show` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub example: StoredExample,
    pub summary: Summary,
    pub verdicts: Vec<NamedVerdict>,
    pub history: Vec<HistoryEntry>,
    pub edits: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct NamedVerdict {
    pub filter: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    #[serde(flatten)]
    pub decision: Decision,
    pub decided_at: String,
}

pub fn detail(store: &Store, id: &str) -> anyhow::Result<Detail> {
    let example = store.example(id)?;
    let summary = store.summary(id)?;
    let verdicts = store.verdicts(id)?.into_iter().map(|(filter, verdict)| NamedVerdict { filter, verdict }).collect();
    let history = store.review_history(id)?.into_iter().map(|(decision, decided_at)| HistoryEntry { decision, decided_at }).collect();
    let edits = store.edit_count(id)?;
    Ok(Detail { example, summary, verdicts, history, edits })
}

/// Longest message text shown in the interactive review (the rest is elided; `show` prints all).
pub const CLIP: usize = 6000;

fn clip(text: &str, max: Option<usize>) -> String {
    match max {
        Some(max) if text.chars().count() > max => {
            let cut: String = text.chars().take(max).collect();
            format!("{cut}\n… ({} more characters; `brain review show ID` prints everything)", text.chars().count() - max)
        }
        _ => text.to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect::<String>()
}

/// The detail as text, control characters and bidi overrides stripped. `clip_at` bounds each
/// message's length.
pub fn render(d: &Detail, clip_at: Option<usize>) -> String {
    let s = &d.summary;
    let ex = &d.example.example;
    let mut o = String::new();
    let status = match (&s.decided_by, &s.reason) {
        (Some(by), Some(r)) => format!("{} ({}: {r})", s.status.as_str(), by.as_str()),
        (Some(by), None) => format!("{} ({})", s.status.as_str(), by.as_str()),
        _ => s.status.as_str().to_string(),
    };
    let _ = writeln!(o, "id          {}", d.example.id);
    let _ = writeln!(o, "status      {status}");
    if let Some(note) = &s.note {
        let _ = writeln!(o, "note        {note}");
    }
    let _ = writeln!(o, "source      {} (plugin {})", d.example.source, d.example.plugin);
    let _ = writeln!(o, "kind/task   {} / {}", ex.kind, ex.task);
    let _ = writeln!(o, "provenance  {}", ex.provenance);
    match s.score {
        Some(score) => {
            let parts: Vec<String> = d.verdicts.iter().map(|v| format!("{} {:.2}", v.filter, v.verdict.score)).collect();
            let _ = writeln!(o, "score       {score:.2} (lowest of: {})", parts.join(", "));
        }
        None => {
            let _ = writeln!(o, "score       none (no filter scored it)");
        }
    }
    if let Some(c) = s.complexity {
        let _ = writeln!(o, "complexity  {c}");
    }
    let mut flags: Vec<&str> = d.verdicts.iter().flat_map(|v| v.verdict.flags.iter().map(String::as_str)).collect();
    flags.sort();
    flags.dedup();
    if !flags.is_empty() {
        let _ = writeln!(o, "flags       {}", flags.join(", "));
    }
    for v in &d.verdicts {
        let fired = if v.verdict.fired.is_empty() { "-".to_string() } else { v.verdict.fired.join(", ") };
        let reject = v.verdict.reject_reason.as_deref().map(|r| format!("  REJECT: {r}")).unwrap_or_default();
        let _ = writeln!(o, "rules       {}: rule {}; fired {fired}{reject}", v.filter, v.verdict.rule);
    }
    if !d.example.scrub_counts.is_empty() {
        let parts: Vec<String> = d.example.scrub_counts.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let _ = writeln!(o, "scrubbed    {}", parts.join(", "));
    }
    if let Some(of) = &s.duplicate_of {
        let _ = writeln!(o, "duplicate   of {of} (similarity {:.2})", s.similarity.unwrap_or(0.0));
    }
    if d.edits > 0 {
        let _ = writeln!(o, "edited      {} time(s)", d.edits);
    }
    if ex.metadata.as_object().is_some_and(|m| !m.is_empty()) {
        let _ = writeln!(o, "metadata    {}", clip(&ex.metadata.to_string(), Some(400)));
    }
    for m in &ex.messages {
        let _ = write!(o, "\n[{}]\n{}", m.role.as_str(), indent(&clip(&m.content, clip_at)));
    }
    if let Some(r) = &ex.rejected {
        let _ = write!(o, "\n[rejected]\n{}", indent(&clip(r, clip_at)));
    }
    if d.history.len() > 1 || (clip_at.is_none() && !d.history.is_empty()) {
        let _ = writeln!(o, "\nhistory");
        for h in &d.history {
            let reason = h.decision.reason.as_deref().unwrap_or("");
            let _ = writeln!(o, "  {}  {:<8} {:<5} {reason}", h.decided_at, h.decision.status.as_str(), h.decision.decided_by.as_str());
        }
    }
    // Everything here came from plugins (examples, verdicts) or the reviewer: no escape sequence
    // or bidi override in it reaches the terminal.
    crate::plugin::text::strip_controls(&o).into_owned()
}
