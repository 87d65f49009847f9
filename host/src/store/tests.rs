use super::*;
use crate::example::{Example, Kind, Message, Role, Verdict};

fn chat(q: &str, a: &str, provenance: &str) -> Example {
    Example {
        kind: Kind::Chat,
        task: "commit-message".into(),
        messages: vec![
            Message { role: Role::User, content: q.into() },
            Message { role: Role::Assistant, content: a.into() },
        ],
        rejected: None,
        provenance: provenance.into(),
        metadata: serde_json::json!({"files": 2}),
    }
}

fn records(n: usize, prefix: &str) -> Vec<Record> {
    (0..n).map(|i| Record::new(chat(&format!("{prefix} question {i}"), "answer", &format!("repo@{i}")))).collect()
}

#[test]
fn migrations_run_once_and_reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/brain.db");
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), schema::MIGRATIONS.len() as i64);
        s.store_batch("src", "git", &records(3, "a"), Some("cp1")).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.status().unwrap().total, 3);
    assert_eq!(s.checkpoint("src").unwrap().as_deref(), Some("cp1"));
    let mode: String = s.conn().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = s.conn().pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let ckpt: i64 = s.conn().pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0)).unwrap();
    assert_eq!(ckpt, 32000);
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn a_newer_store_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brain.db");
    Store::open(&path).unwrap().conn().pragma_update(None, "user_version", 99).unwrap();
    let err = Store::open(&path).err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{msg}");
    assert!(msg.contains("upgrade brain") && msg.contains("brain.db"), "{msg}");
}

#[test]
fn duplicates_are_ignored_within_and_across_batches() {
    let mut s = Store::open_in_memory().unwrap();
    let mut batch = records(5, "a");
    // Same content, other whitespace and provenance: the same example.
    batch.push(Record::new(chat("a  question 0", "answer\n", "elsewhere@1")));
    let out = s.store_batch("one", "git", &batch, None).unwrap();
    assert_eq!(out, BatchOutcome { stored: 5, duplicate: 1 });
    let out = s.store_batch("two", "git", &records(7, "a"), None).unwrap();
    assert_eq!(out, BatchOutcome { stored: 2, duplicate: 5 });
    let st = s.status().unwrap();
    assert_eq!(st.total, 7);
    assert_eq!(st.by_source["one"], 5);
    assert_eq!(st.by_source["two"], 2);
}

#[test]
fn checkpoint_is_updated_with_each_batch() {
    let mut s = Store::open_in_memory().unwrap();
    assert_eq!(s.checkpoint("src").unwrap(), None);
    s.store_batch("src", "git", &records(1, "a"), Some("one")).unwrap();
    s.store_batch("src", "git", &[], Some("two")).unwrap();
    s.store_batch("src", "git", &records(1, "b"), None).unwrap();
    assert_eq!(s.checkpoint("src").unwrap().as_deref(), Some("two"));
    assert_eq!(s.checkpoint("other").unwrap(), None);
}

#[test]
fn examples_round_trip() {
    let mut s = Store::open_in_memory().unwrap();
    let mut ex = chat("q", "a", "repo@abc");
    ex.kind = Kind::Preference;
    ex.rejected = Some("worse".into());
    let mut rec = Record::new(ex.clone());
    rec.scrub_counts.insert("github-pat".into(), 2);
    s.store_batch("src", "git", &[rec], None).unwrap();
    let id = example_id(&ex);
    let got = s.example(&id).unwrap();
    assert_eq!(got.example, ex);
    assert_eq!(got.source, "src");
    assert_eq!(got.plugin, "git");
    assert_eq!(got.scrub_counts["github-pat"], 2);
    assert!(got.created_at.ends_with('Z'), "{}", got.created_at);
    assert_eq!(s.example_ids(Some("src")).unwrap(), vec![id]);
    assert!(matches!(s.example("nope"), Err(StoreError::NoExample(_))));
}

#[test]
fn curation_data_is_written_for_new_examples_only() {
    let mut s = Store::open_in_memory().unwrap();
    let first = Record::new(chat("original", "a", "p@1"));
    s.store_batch("src", "git", std::slice::from_ref(&first), None).unwrap();
    let first_id = example_id(&first.example);

    let verdict = Verdict {
        score: 0.9,
        flags: vec!["too_long".into()],
        complexity: 4,
        reject_reason: None,
        rule: "base".into(),
        fired: vec!["too_long:-0.1".into()],
    };
    let mut rec = Record::new(chat("near copy", "a", "p@2"));
    rec.verdicts.push(("quality".into(), verdict));
    rec.minhash = Some(MinHash { signature: vec![1, 2, 3], bands: vec![u64::MAX, 7] });
    rec.duplicate_of = Some((first_id.clone(), 0.8));
    rec.decision = Some(Decision { status: ReviewStatus::Approved, reason: Some("score 0.9 > 0.7".into()), note: None, decided_by: DecidedBy::Auto });
    // Stored twice: the second time it is a duplicate and writes nothing more.
    s.store_batch("src", "git", &[rec.clone(), rec.clone()], None).unwrap();
    let id = example_id(&rec.example);
    let c = s.conn();
    let one = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(one("SELECT count(*) FROM verdicts"), 1);
    assert_eq!(one("SELECT count(*) FROM minhash"), 1);
    assert_eq!(one("SELECT count(*) FROM minhash_bands"), 2);
    assert_eq!(one("SELECT hash FROM minhash_bands WHERE band = 0"), -1, "u64 stored bit-for-bit");
    assert_eq!(one("SELECT count(*) FROM reviews"), 1);
    let dup_of: String = c.query_row("SELECT duplicate_of FROM duplicates WHERE example_id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(dup_of, first_id);
    let st = s.status().unwrap();
    assert_eq!((st.near_duplicates, st.scored), (1, 1));
    assert_eq!(st.by_status["approved"], 1);
    assert_eq!(st.by_status["pending"], 1);
    assert_eq!(st.by_status["rejected"], 0);
}

#[test]
fn reviews_keep_history_and_undo_restores_the_previous_status() {
    let mut s = Store::open_in_memory().unwrap();
    let rec = Record::new(chat("q", "a", "p"));
    s.store_batch("src", "git", std::slice::from_ref(&rec), None).unwrap();
    let id = example_id(&rec.example);
    assert_eq!(s.review_status(&id).unwrap(), ReviewStatus::Pending);
    let decide = |status, by| Decision { status, reason: None, note: Some("n".into()), decided_by: by };
    s.review(&id, &decide(ReviewStatus::Approved, DecidedBy::Auto)).unwrap();
    s.review(&id, &decide(ReviewStatus::Rejected, DecidedBy::Human)).unwrap();
    assert_eq!(s.review_status(&id).unwrap(), ReviewStatus::Rejected);
    assert_eq!(s.review_history(&id).unwrap().len(), 2);
    assert_eq!(s.undo_review(&id).unwrap(), Some(ReviewStatus::Approved));
    assert_eq!(s.undo_review(&id).unwrap(), Some(ReviewStatus::Pending));
    assert_eq!(s.undo_review(&id).unwrap(), None);
    assert!(matches!(s.review("missing", &decide(ReviewStatus::Approved, DecidedBy::Human)), Err(StoreError::NoExample(_))));
}

#[test]
fn status_counts_by_kind_task_and_status() {
    let mut s = Store::open_in_memory().unwrap();
    let mut recs = records(3, "a");
    recs[0].example.kind = Kind::Correction;
    recs[1].example.task = "explain-doc".into();
    s.store_batch("src", "git", &recs, Some("cp")).unwrap();
    let st = s.status().unwrap();
    assert_eq!(st.total, 3);
    assert_eq!(st.by_kind["chat"], 2);
    assert_eq!(st.by_kind["correction"], 1);
    assert_eq!(st.by_task["explain-doc"], 1);
    assert_eq!(st.by_status["pending"], 3);
    assert!(st.checkpoints.contains_key("src"));
    assert!(st.last_collected.is_some());
    let json = serde_json::to_value(&st).unwrap();
    for key in ["total", "by_source", "by_kind", "by_status"] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
}

#[test]
fn a_failed_batch_leaves_nothing_behind() {
    let mut s = Store::open_in_memory().unwrap();
    s.store_batch("src", "git", &records(2, "a"), Some("good")).unwrap();
    // A duplicate link to an example that does not exist violates a foreign key mid-batch.
    let mut bad = records(3, "b");
    bad[2].duplicate_of = Some(("no-such-example".into(), 0.9));
    assert!(s.store_batch("src", "git", &bad, Some("bad")).is_err());
    assert_eq!(s.status().unwrap().total, 2);
    assert_eq!(s.checkpoint("src").unwrap().as_deref(), Some("good"));
}
