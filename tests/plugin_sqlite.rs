//! The `sqlite` capability: read-only, granted files only, capped results.

use brain::capability::sqlite::{SqlConn, MAX_ROWS};
use brain::capability::Capabilities;
use brain::plugin::bindings::source::sam::plugin::sqlite::Value;

fn make_db(path: &std::path::Path, rows: usize) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE snippets (id INTEGER PRIMARY KEY, language TEXT, content BLOB, score REAL);").unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO snippets (language, content, score) VALUES (?1, ?2, ?3)",
            rusqlite::params![if i % 2 == 0 { "rust" } else { "python" }, format!("fn f{i}() {{}}").into_bytes(), i as f64 / 2.0],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn queries_are_read_only_and_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("code.db");
    make_db(&db, MAX_ROWS + 5);
    let conn = SqlConn::open(&db).unwrap();
    assert_eq!(conn.tables().unwrap(), vec!["snippets".to_string()]);
    assert_eq!(conn.columns("snippets").unwrap(), vec!["id", "language", "content", "score"]);
    assert!(conn.columns("missing").unwrap().is_empty());

    let rows = conn
        .query("SELECT id, language, content, score FROM snippets WHERE language = ?1 ORDER BY id LIMIT ?2", &[Value::Text("python".into()), Value::Integer(3)], None)
        .unwrap();
    assert_eq!(rows.columns, vec!["id", "language", "content", "score"]);
    assert_eq!(rows.rows.len(), 3);
    assert!(matches!(&rows.rows[0][0], Value::Integer(2)));
    assert!(matches!(&rows.rows[0][1], Value::Text(t) if t == "python"));
    assert!(matches!(&rows.rows[0][2], Value::Blob(b) if b == b"fn f1() {}"));
    assert!(matches!(&rows.rows[0][3], Value::Real(x) if *x == 0.5));

    // Writes, ATTACH and setting pragmas are refused; the file is unchanged.
    for sql in [
        "INSERT INTO snippets (language) VALUES ('x')",
        "DELETE FROM snippets",
        "DROP TABLE snippets",
        "PRAGMA query_only = 0",
        "ATTACH DATABASE '/tmp/other.db' AS other",
    ] {
        assert!(conn.query(sql, &[], None).is_err(), "{sql} was allowed");
    }
    // Too many rows: an error that says how to page.
    let err = conn.query("SELECT * FROM snippets", &[], None).unwrap_err();
    assert!(err.contains("LIMIT/OFFSET"), "{err}");
    // A runaway query stops at the deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    let err = conn
        .query("WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r", &[], Some(deadline))
        .unwrap_err();
    assert!(err.contains("interrupt"), "{err}");
    drop(conn);
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM snippets", [], |r| r.get(0)).unwrap();
    assert_eq!(n as usize, MAX_ROWS + 5);
}

#[test]
fn only_granted_files_open() {
    let tmp = tempfile::tempdir().unwrap();
    let granted = tmp.path().join("granted.db");
    let other = tmp.path().join("other.db");
    make_db(&granted, 1);
    make_db(&other, 1);
    let mut caps = Capabilities::new("p".into(), &[], std::slice::from_ref(&granted));
    assert!(caps.check("sqlite", granted.to_str().unwrap()).is_ok());
    let err = caps.check("sqlite", other.to_str().unwrap()).unwrap_err();
    assert!(err.contains("denied"), "{err}");
    assert_eq!(caps.denial.take().unwrap().capability, "sqlite");
    assert!(caps.check("sqlite", "relative.db").is_err());
    let sneaky = format!("{}/../other.db", tmp.path().join("x").display());
    assert!(caps.check("sqlite", &sneaky).is_err());
    // A directory grant covers the files below it; git grants do not cover sqlite.
    let mut caps = Capabilities::new("p".into(), &[tmp.path().to_path_buf()], &[]);
    assert!(caps.check("sqlite", other.to_str().unwrap()).is_err());
    let mut caps = Capabilities::new("p".into(), &[], &[tmp.path().to_path_buf()]);
    assert!(caps.check("sqlite", other.to_str().unwrap()).is_ok());
    assert!(caps.check("git", other.to_str().unwrap()).is_err());
}
