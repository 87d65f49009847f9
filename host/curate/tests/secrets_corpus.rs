//! Recall and false redaction over the secrets corpus (tests/secrets-corpus/): fake secrets of
//! documented token formats in realistic contexts, and hand-written harmless look-alikes.
//! Recall must be ≥ 95% in every rule family, false redaction ≤ 5% over the look-alikes, every
//! built-in rule must redact at least one case of its own, and redaction replaces the secret's
//! span only, keeping the key and punctuation around it.

use std::collections::BTreeMap;

use brain_curate::{ScrubConfig, Scrubber};

mod corpus {
    include!("common/secrets_corpus.rs");
}
use corpus::*;

#[test]
fn recall_per_family_is_at_least_95_percent() {
    let scrubber = Scrubber::default();
    let cases = positives();
    assert!(cases.len() >= 400, "the corpus holds {} cases", cases.len());
    let mut per_family: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    for case in &cases {
        let out = scrubber.scrub(&case.text);
        let entry = per_family.entry(case.family.as_str()).or_default();
        entry.1 += 1;
        if out.text.contains(&case.secret) {
            missed.push(format!("{} {} (line {}): {}", case.family, case.rule, case.line, case.text.lines().next().unwrap_or("")));
        } else {
            entry.0 += 1;
        }
    }
    let mut report = String::new();
    for (family, (found, total)) in &per_family {
        report.push_str(&format!("{family}: {found}/{total} = {:.1}%\n", 100.0 * *found as f64 / *total as f64));
    }
    eprintln!("{report}missed:\n{}", missed.join("\n"));
    assert!(per_family.len() >= 12, "{report}");
    for (family, (found, total)) in &per_family {
        assert!(*total >= 10, "family {family} has only {total} cases");
        assert!(*found as f64 >= 0.95 * *total as f64, "family {family}: recall {found}/{total} below 95%\n{report}\nmissed:\n{}", missed.join("\n"));
    }
}

/// The forms a text takes on its way in: a git diff prefixes each line with `+`, a transcript's
/// tool excerpt indents each line, markdown quotes them with `> `.
#[test]
fn recall_holds_in_diffs_indented_tool_output_and_quotes() {
    let scrubber = Scrubber::default();
    let cases = positives();
    for prefix in ["+", "  ", "> "] {
        let mut per_family: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut missed = Vec::new();
        for case in &cases {
            let text: String = case.text.lines().map(|l| format!("{prefix}{l}\n")).collect();
            let entry = per_family.entry(case.family.as_str()).or_default();
            entry.1 += 1;
            if scrubber.scrub(&text).text.contains(&case.secret) {
                missed.push(format!("{} {} (line {})", case.family, case.rule, case.line));
            } else {
                entry.0 += 1;
            }
        }
        for (family, (found, total)) in &per_family {
            assert!(*found as f64 >= 0.95 * *total as f64, "prefix {prefix:?}, family {family}: {found}/{total}\nmissed: {}", missed.join("\n"));
        }
    }
}

#[test]
fn false_redaction_of_look_alikes_is_at_most_5_percent() {
    let scrubber = Scrubber::default();
    let cases = negatives();
    assert!(cases.len() >= 120, "{}", cases.len());
    let touched: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let out = scrubber.scrub(&c.text);
            (out.text != c.text).then(|| format!("{} (line {}): {}\n  -> {}", c.kind, c.line, c.text, out.text))
        })
        .collect();
    eprintln!("{} of {} look-alikes touched:\n{}", touched.len(), cases.len(), touched.join("\n"));
    assert!(touched.len() as f64 <= 0.05 * cases.len() as f64, "{} of {} look-alikes redacted:\n{}", touched.len(), cases.len(), touched.join("\n"));
    // Every kind of look-alike is represented.
    for kind in ["placeholder", "template", "documented-example", "low-entropy", "hash-id", "prose", "code"] {
        assert!(cases.iter().filter(|c| c.kind == kind).count() >= 5, "fewer than 5 `{kind}` look-alikes");
    }
}

#[test]
fn every_rule_redacts_its_own_cases() {
    let scrubber = Scrubber::new(&ScrubConfig { emails: true, home_paths: true, ..Default::default() }).unwrap();
    let cases = positives();
    for rule in scrubber.rule_ids().filter(|r| !["email", "home-path"].contains(r)) {
        let own: Vec<&Positive> = cases.iter().filter(|c| c.rule == rule).collect();
        assert!(!own.is_empty(), "rule {rule} has no case in the corpus");
        let marker = format!("[REDACTED:{rule}]");
        let by_it = own.iter().filter(|c| scrubber.scrub(&c.text).text.contains(&marker)).count();
        // Overlapping rules may claim some of them (the longer match, then the earlier rule wins).
        assert!(by_it >= 1, "rule {rule} redacted none of its {} cases itself", own.len());
    }
}

#[test]
fn redaction_replaces_the_span_only() {
    let scrubber = Scrubber::default();
    let mut wrong = Vec::new();
    let cases = positives();
    for case in cases.iter().filter(|c| c.family != "private-key" && c.family != "k8s-secret") {
        let out = scrubber.scrub(&case.text);
        if out.text.contains(&case.secret) {
            continue;
        }
        // What stood on the secret's line before it is still there, followed by a marker.
        let at = case.text.find(&case.secret).unwrap();
        let line_start = case.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = &case.text[line_start..at];
        if !out.text.contains(&format!("{before}[REDACTED:")) {
            wrong.push(format!("{}: {:?}\n  -> {:?}", case.rule, case.text, out.text));
        }
    }
    assert!(wrong.len() * 50 <= cases.len(), "{} cases lost text around the secret:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn key_blocks_are_replaced_whole() {
    let scrubber = Scrubber::default();
    for case in positives().iter().filter(|c| c.rule == "private-key" && c.text.contains("-----END") && !c.text.contains("\\n")) {
        let out = scrubber.scrub(&case.text);
        assert!(!out.text.contains("PRIVATE KEY"), "{}", out.text);
        let body_lines = case.text.lines().filter(|l| l.len() >= 60 && !l.contains(' ')).count();
        let left = out.text.lines().filter(|l| l.len() >= 60 && !l.contains(' ')).count();
        assert!(body_lines >= 6 && left == 0, "{} body lines left:\n{}", left, out.text);
    }
}
