//! Batch review by score, source and kind, `list`/`show` (text and `--json`), and `recut`:
//! re-deciding from stored scores under new thresholds without running any plugin, never
//! touching a person's decision.

mod common;
#[path = "curation_support.rs"]
mod support;

use common::*;
use support::*;

/// Two sources of 5 examples each, every example scored by a (pretend) filter: the scores are
/// written into the store as a filter would have stored them.
fn scored_env(review: &str) -> (Env, Vec<(String, String, f64)>) {
    let env = Env::new();
    let a = env.path().join("a");
    let b = env.path().join("b");
    prose_repo(&a, 5, "a");
    prose_repo(&b, 5, "b");
    env.write_config(&format!("{}{}{review}", git_source("alpha", &a), git_source("beta", &b)));
    env.run(["collect"]).assert_ok();
    let db = rusqlite::Connection::open(env.db_path()).unwrap();
    let ids: Vec<(String, String)> = db
        .prepare("SELECT id, source FROM examples ORDER BY source, id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for (i, (id, source)) in ids.into_iter().enumerate() {
        // alpha: 0.1 0.3 0.5 0.7 0.9; beta: 0.2 0.4 0.6 0.8 1.0 (as f32, like a plugin's).
        let score = ((i % 5) as f32 * 0.2 + if source == "alpha" { 0.1 } else { 0.2 }) as f64;
        let score = score as f32 as f64;
        db.execute(
            "INSERT INTO verdicts (example_id, filter, score, complexity, rule) VALUES (?1, 'pretend', ?2, 3, 'base')",
            rusqlite::params![id, score],
        )
        .unwrap();
        out.push((id, source, score));
    }
    (env, out)
}

fn count(env: &Env, status: &str) -> u64 {
    env.status()["by_status"][status].as_u64().unwrap()
}

#[test]
fn batch_approve_and_reject_by_score_source_and_kind() {
    let (env, scored) = scored_env("");
    assert_eq!(count(&env, "pending"), 10);

    // Dry run first: nothing changes.
    let dry = env.run(["review", "approve", "--min-score", "0.7", "--dry-run", "--json"]);
    dry.assert_ok();
    assert_eq!(dry.json()["decided"], 4);
    assert_eq!(count(&env, "approved"), 0);

    let run = env.run(["review", "approve", "--min-score", "0.7", "--json"]);
    run.assert_ok();
    let report = run.json();
    assert_eq!(report["decided"], 4, "0.7 (as f32), 0.8, 0.9, 1.0: {report}");
    for (id, _, score) in &scored {
        let (status, by, _) = status_of(&env, id);
        if *score >= 0.7 - 1e-6 {
            assert_eq!((status.as_str(), by.as_deref()), ("approved", Some("human")), "{score}");
        }
    }
    let run = env.run(["review", "reject", "--max-score", "0.2", "--source", "alpha", "--reason", "too weak", "--json"]);
    run.assert_ok();
    assert_eq!(run.json()["decided"], 1, "only alpha's 0.1");
    let rejected = env.run(["review", "list", "--status", "rejected", "--json"]).json();
    assert_eq!(rejected.as_array().unwrap().len(), 1);
    assert_eq!(rejected[0]["reason"], "too weak");
    assert_eq!(rejected[0]["source"], "alpha");

    // By kind: every example is chat; none is a correction.
    let run = env.run(["review", "approve", "--kind", "correction", "--json"]);
    run.assert_ok();
    assert_eq!(run.json()["matched"], 0);

    // By id (prefix), whatever the status: reject an approved one.
    let top = scored.iter().find(|s| s.2 > 0.99).unwrap();
    env.run(["review", "reject", &top.0[..10], "--reason", "actually wrong", "--note", "checked the numbers"]).assert_ok();
    assert_eq!(status_of(&env, &top.0).0, "rejected");
    let shown = env.run(["review", "show", &top.0, "--json"]).json();
    assert!(shown.to_string().contains("checked the numbers"), "the --note is kept with the decision: {shown:#}");

    // Nothing selected is an error, not "everything".
    let run = env.run(["review", "approve"]);
    run.assert_failed();
    assert!(run.stderr.contains("say which examples"), "{}", run.stderr);

    // list text and show text.
    let list = env.run(["review", "list", "--status", "approved"]);
    list.assert_ok();
    assert!(list.stdout.contains("3 examples: 3 approved"), "{}", list.stdout);
    let show = env.run(["review", "show", &top.0]);
    show.assert_ok();
    for want in ["status      rejected (human: actually wrong)", "score       1.00", "pretend 1.00", "[user]", "[assistant]", "history"] {
        assert!(show.stdout.contains(want), "{want:?} missing:\n{}", show.stdout);
    }
}

#[test]
fn recut_redecides_from_stored_scores_and_keeps_human_decisions() {
    let (env, scored) = scored_env("[review]\napprove_above = 0.7\nreject_below = 0.3\n");
    // Collected before the scores existed: all pending. A person decides one.
    let human = scored.iter().find(|s| (s.2 - 0.9).abs() < 1e-6).unwrap().0.clone();
    env.run(["review", "reject", &human, "--reason", "mine"]).assert_ok();

    let run = env.run(["review", "recut", "--json"]);
    run.assert_ok();
    let r = run.json();
    assert_eq!(r["considered"], 9, "{r}");
    // approved: 0.7 0.8 1.0 (0.9 is the person's); rejected: 0.1 0.2; pending: 0.3 .. 0.6.
    assert_eq!(count(&env, "approved"), 3);
    assert_eq!(count(&env, "rejected"), 3);
    assert_eq!(count(&env, "pending"), 4);
    assert_eq!(status_of(&env, &human), ("rejected".into(), Some("human".into()), Some("mine".into())));
    for (id, _, score) in &scored {
        let (status, by, reason) = status_of(&env, id);
        if id == &human {
            continue;
        }
        let want = if *score >= 0.7 - 1e-6 {
            "approved"
        } else if *score < 0.3 - 1e-6 {
            "rejected"
        } else {
            "pending"
        };
        assert_eq!(status, want, "score {score}: {reason:?}");
        if want != "pending" {
            assert_eq!(by.as_deref(), Some("auto"));
        }
    }

    // Stricter thresholds: re-decided again, history kept; a dry run changes nothing.
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("approve_above = 0.7", "approve_above = 0.85")
        .replace("reject_below = 0.3", "reject_below = 0.5");
    std::fs::write(env.config_path(), config).unwrap();
    let dry = env.run(["review", "recut", "--dry-run", "--json"]);
    dry.assert_ok();
    assert_eq!(dry.json()["changed"], 4, "{}", dry.stdout);
    assert_eq!(count(&env, "approved"), 3);
    let run = env.run(["review", "recut", "--json"]);
    run.assert_ok();
    let t = &run.json()["transitions"];
    assert_eq!(t["approved->pending"], 2, "{t}"); // 0.7, 0.8
    assert_eq!(t["pending->rejected"], 2, "{t}"); // 0.3, 0.4
    assert_eq!(count(&env, "approved"), 1); // 1.0
    assert_eq!(env.count("SELECT count(*) FROM verdicts"), 10, "no plugin ran, no score changed");
    let text = env.run(["review", "recut"]);
    text.assert_ok();
    assert!(text.stdout.contains("changed 0"), "{}", text.stdout);
}
