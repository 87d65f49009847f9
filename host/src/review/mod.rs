//! Review: every example is pending, approved or rejected, with a reason, an optional note, a
//! time and who decided (`auto` or `human`); every decision is kept, so any can be undone.
//!
//! - [`auto_decision`]: what curation decides from the filters' verdicts and the `[review]`
//!   thresholds — a filter's reject rejects; otherwise the combined score (the lowest filter
//!   score) is approved at or above `approve_above`, rejected below `reject_below`, and waits for
//!   a person in between (or when no filter scored it).
//! - [`recut`]: the same decision again from the stored scores under the current thresholds,
//!   without running any plugin. It never touches a person's decision, nor a near duplicate.
//! - [`batch`]: a person's decision on many examples at once (by ids, score, source, kind).
//! - [`session`]: the interactive review (`brain review`), on a terminal or scripted on stdin.

pub mod session;
pub mod show;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::Review;
use crate::example::Verdict;
use crate::store::verdicts::{Selector, Summary};
use crate::store::{DecidedBy, Decision, ReviewStatus, Store};

/// The reason of an automatic rejection of a near duplicate (kept in the store, so the example
/// stays visible and its link to the one kept is recorded).
pub const DUPLICATE: &str = "duplicate";

/// The start of the reason of an example a failing filter did not score: it is never approved
/// automatically (not by recut either), since the missing verdict could have rejected it.
pub const NOT_SCORED: &str = "not scored by filter";

/// The combined score: the lowest score any filter gave (none without verdicts), rounded to six
/// decimals (plugins score in `f32`: 0.7 arrives as 0.69999998…, and must still meet 0.7).
pub fn combined_score<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Option<f64> {
    verdicts.into_iter().map(|v| v.score as f64).reduce(f64::min).map(|s| (s * 1e6).round() / 1e6)
}

/// A filter's rejection, as a reason: `quality: too short (rule too_short)`.
pub fn filter_reject(verdicts: &[(String, Verdict)]) -> Option<String> {
    verdicts.iter().find_map(|(name, v)| {
        v.reject_reason.as_ref().map(|r| {
            if v.rule.is_empty() || r.contains(&v.rule) {
                format!("{name}: {r}")
            } else {
                format!("{name}: {r} (rule {})", v.rule)
            }
        })
    })
}

/// The automatic decision for an example with these verdicts. `Pending` means: leave it for a
/// person (no decision row is written for it).
pub fn auto_decision(verdicts: &[(String, Verdict)], t: &Review) -> Decision {
    let auto = |status, reason: String| Decision { status, reason: Some(reason), note: None, decided_by: DecidedBy::Auto };
    if let Some(reason) = filter_reject(verdicts) {
        return auto(ReviewStatus::Rejected, reason);
    }
    match combined_score(verdicts.iter().map(|(_, v)| v)) {
        None => auto(ReviewStatus::Pending, "no filter scored it".into()),
        Some(s) if s < t.reject_below => auto(ReviewStatus::Rejected, format!("score {s:.2} < reject_below {:.2}", t.reject_below)),
        Some(s) if s >= t.approve_above => auto(ReviewStatus::Approved, format!("score {s:.2} >= approve_above {:.2}", t.approve_above)),
        Some(s) => auto(ReviewStatus::Pending, format!("score {s:.2} between {:.2} and {:.2}", t.reject_below, t.approve_above)),
    }
}

/// What [`recut`] changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecutReport {
    /// Examples looked at (not decided by a person, not near duplicates).
    pub considered: u64,
    pub changed: u64,
    /// `from->to` → count.
    pub transitions: BTreeMap<String, u64>,
    pub by_status: BTreeMap<String, u64>,
    pub dry_run: bool,
    pub thresholds: Thresholds,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Thresholds {
    pub approve_above: f64,
    pub reject_below: f64,
}

/// Re-decides every automatically decided (or never decided) example from its stored verdicts
/// under `t`. Decisions by a person and near-duplicate rejections stand. Writes a new automatic
/// decision (history kept) only where the status changes.
pub fn recut(store: &mut Store, t: &Review, dry_run: bool) -> anyhow::Result<RecutReport> {
    let verdicts = store.all_verdicts()?;
    let summaries = store.summaries(&Selector::default())?;
    let mut report =
        RecutReport { dry_run, thresholds: Thresholds { approve_above: t.approve_above, reject_below: t.reject_below }, ..Default::default() };
    let mut writes = Vec::new();
    let none = Vec::new();
    for s in &summaries {
        let by_person = s.decided_by == Some(DecidedBy::Human);
        let duplicate = s.duplicate_of.is_some() && s.reason.as_deref() == Some(DUPLICATE);
        if by_person || duplicate {
            continue;
        }
        report.considered += 1;
        let mut d = auto_decision(verdicts.get(&s.id).unwrap_or(&none), t);
        if d.status == ReviewStatus::Approved && s.reason.as_deref().is_some_and(|r| r.starts_with(NOT_SCORED)) {
            continue;
        }
        *report.by_status.entry(d.status.as_str().to_string()).or_default() += 1;
        if d.status == s.status {
            continue;
        }
        report.changed += 1;
        *report.transitions.entry(format!("{}->{}", s.status.as_str(), d.status.as_str())).or_default() += 1;
        d.note = Some("recut".into());
        writes.push((s.id.clone(), d));
    }
    if !dry_run {
        store.decide_many(&writes)?;
    }
    Ok(report)
}

/// A batch decision: which examples, and what to decide.
#[derive(Clone, Debug)]
pub struct Batch {
    pub selector: Selector,
    pub status: ReviewStatus,
    pub reason: String,
    pub note: Option<String>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BatchReport {
    pub status: String,
    pub matched: u64,
    /// Matched examples that already had this status (left as they are).
    pub unchanged: u64,
    pub decided: u64,
    pub dry_run: bool,
    pub ids: Vec<String>,
}

/// Decides every selected example (as a person: `decided_by` human). Examples already in the
/// target status are left alone.
pub fn batch(store: &mut Store, b: &Batch) -> anyhow::Result<BatchReport> {
    let rows: Vec<Summary> = store.summaries(&b.selector)?;
    let mut report = BatchReport { status: b.status.as_str().into(), matched: rows.len() as u64, dry_run: b.dry_run, ..Default::default() };
    let mut writes = Vec::new();
    for s in rows {
        if s.status == b.status {
            report.unchanged += 1;
            continue;
        }
        report.ids.push(s.id.clone());
        writes.push((s.id, Decision { status: b.status, reason: Some(b.reason.clone()), note: b.note.clone(), decided_by: DecidedBy::Human }));
    }
    report.decided = writes.len() as u64;
    if !b.dry_run {
        store.decide_many(&writes)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(score: f32, reject: Option<&str>) -> Verdict {
        Verdict { score, flags: vec![], complexity: 3, reject_reason: reject.map(String::from), rule: "phrase".into(), fired: vec![] }
    }

    #[test]
    fn thresholds_and_filter_rejects() {
        let t = Review { approve_above: 0.7, reject_below: 0.3 };
        let d = |vs: Vec<(&str, Verdict)>| auto_decision(&vs.into_iter().map(|(n, v)| (n.to_string(), v)).collect::<Vec<_>>(), &t).status;
        assert_eq!(d(vec![]), ReviewStatus::Pending);
        assert_eq!(d(vec![("q", v(0.7, None))]), ReviewStatus::Approved, "at the threshold approves");
        assert_eq!(d(vec![("q", v(0.9, None)), ("r", v(0.5, None))]), ReviewStatus::Pending, "the lowest score counts");
        assert_eq!(d(vec![("q", v(0.29, None))]), ReviewStatus::Rejected);
        assert_eq!(d(vec![("q", v(0.3, None))]), ReviewStatus::Pending);
        assert_eq!(d(vec![("q", v(0.95, Some("refusal")))]), ReviewStatus::Rejected, "a filter's reject wins");
        let r = auto_decision(&[("quality".into(), v(0.9, Some("refusal")))], &t);
        assert_eq!(r.reason.as_deref(), Some("quality: refusal (rule phrase)"));
    }
}
