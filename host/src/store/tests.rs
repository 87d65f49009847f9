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

/// A store made by the previous version (migrations 1–2, with `example_splits` already created
/// on first use as exports did then) gains migration 3 and keeps its rows.
#[test]
fn a_version_2_store_migrates_to_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let id = example_id(&chat("q", "a", "p"));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO examples (id, source, plugin, provenance, kind, task, messages) VALUES (?1, 's', 'git', 'p', 'chat', 't', '[]')",
            [&id],
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS example_splits (
                 example_id  TEXT PRIMARY KEY REFERENCES examples(id) ON DELETE CASCADE,
                 split       TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),
                 assigned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ) STRICT, WITHOUT ROWID;",
        )
        .unwrap();
        conn.execute("INSERT INTO example_splits (example_id, split) VALUES (?1, 'test')", [&id]).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::MIGRATIONS.len() as i64);
    let tables: Vec<String> = s
        .conn()
        .prepare("SELECT name FROM sqlite_schema WHERE name IN ('review_cursor', 'example_edits', 'example_edits_review', 'example_splits') ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(tables, ["example_edits", "example_edits_review", "example_splits", "review_cursor"]);
    let split: String = s.conn().query_row("SELECT split FROM example_splits WHERE example_id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(split, "test", "rows of a table created on first use are kept");
    s.set_review_cursor("main", Some(&id)).unwrap();
    assert_eq!(s.review_cursor("main").unwrap().map(|(_, e)| e), Some(id.clone()));
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

/// Batches in a write group become visible to the connection at once and durable at the
/// commit; a batch that fails rolls back alone (its savepoint), the others stay.
#[test]
fn write_groups_commit_many_batches_and_a_failed_batch_alone_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let mut s = Store::open(&path).unwrap();
    s.begin_group().unwrap();
    s.store_batch("src", "git", &records(3, "a"), Some("cp1")).unwrap();
    s.store_batch("src", "git", &records(2, "b"), Some("cp2")).unwrap();
    // A batch whose duplicate link points at no stored example fails on the foreign key.
    let mut bad = records(1, "c");
    bad[0].duplicate_of = Some(("no-such-example".into(), 0.9));
    assert!(s.store_batch("src", "git", &bad, Some("cp3")).is_err());
    assert_eq!(s.status().unwrap().total, 5, "the group sees its own writes");
    // Another connection sees nothing until the commit.
    let other = rusqlite::Connection::open(&path).unwrap();
    let count = |c: &rusqlite::Connection| -> i64 { c.query_row("SELECT count(*) FROM examples", [], |r| r.get(0)).unwrap() };
    assert_eq!(count(&other), 0);
    let temp_store = |s: &Store| -> i64 { s.conn().pragma_query_value(None, "temp_store", |r| r.get(0)).unwrap() };
    assert_eq!(temp_store(&s), 2, "sub-journals in memory while a group is open");
    s.commit_group().unwrap();
    assert_eq!(temp_store(&s), 0);
    assert_eq!(count(&other), 5);
    assert_eq!(s.checkpoint("src").unwrap().as_deref(), Some("cp2"), "the failed batch's checkpoint is not stored");
    s.commit_group().unwrap(); // no group open: nothing to do
    // Writes that nest (curation's) work inside a group and outside one.
    s.begin_group().unwrap();
    s.put_signatures(&[(example_id(&records(1, "a")[0].example), vec![1, 2, 3])]).unwrap();
    s.commit_group().unwrap();
    s.put_signatures(&[(example_id(&records(1, "b")[0].example), vec![4])]).unwrap();
    assert_eq!(count_rows(&s, "minhash"), 2);
}

fn count_rows(s: &Store, table: &str) -> i64 {
    s.conn().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

/// A record's precomputed id is what the store uses (curation computes it once).
#[test]
fn a_given_record_id_is_trusted() {
    let mut s = Store::open_in_memory().unwrap();
    let mut recs = records(2, "a");
    let expected = example_id(&recs[0].example);
    recs[0].id = Some(expected.clone());
    recs[1].id = Some("given-id".into());
    s.store_batch("src", "git", &recs, None).unwrap();
    assert!(s.has_example(&expected).unwrap());
    assert!(s.has_example("given-id").unwrap());
    assert!(!s.has_example(&example_id(&recs[1].example)).unwrap());
}
