//! The plugin's logic on SQLite databases created by the tests (rusqlite stands in for the
//! host's read-only `sqlite` capability).

use std::collections::BTreeMap;

use rusqlite::types::ValueRef;
use serde_json::json;

use super::*;

struct Sqlite(rusqlite::Connection);

impl Db for Sqlite {
    fn tables(&self) -> Result<Vec<String>, String> {
        let rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", &[])?;
        Ok(rows.rows.iter().map(|r| text(&r[0])).collect())
    }
    fn columns(&self, table: &str) -> Result<Vec<String>, String> {
        let rows = self.query("SELECT name FROM pragma_table_info(?1)", &[Value::Text(table.into())])?;
        Ok(rows.rows.iter().map(|r| text(&r[0])).collect())
    }
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, String> {
        let mut stmt = self.0.prepare(sql).map_err(|e| e.to_string())?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let params: Vec<rusqlite::types::Value> = params
            .iter()
            .map(|p| match p {
                Value::Null => rusqlite::types::Value::Null,
                Value::Integer(i) => rusqlite::types::Value::Integer(*i),
                Value::Real(r) => rusqlite::types::Value::Real(*r),
                Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
                Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
            })
            .collect();
        let n = columns.len();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| {
                (0..n)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(i) => Value::Integer(i),
                            ValueRef::Real(r) => Value::Real(r),
                            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Value>>>()
            })
            .map_err(|e| e.to_string())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        Ok(Rows { columns, rows })
    }
}

const DOCUMENTED_PY: &str = "def load_config(path: str) -> dict:\n    \"\"\"Load the TOML config at `path`, or an empty dict when it is missing.\"\"\"\n    if not os.path.exists(path):\n        return {}\n    with open(path) as f:\n        return toml.load(f)\n";
const DUPLICATED_RS: &str =
    "pub fn clamp_score(x: f32) -> f32 {\n    let y = if x < 0.0 { 0.0 } else { x };\n    if y > 1.0 { 1.0 } else { y }\n}\n";
const PLAIN_JS: &str = "x = 1;\n";
const COMMENTED_SH: &str = "# Remove build outputs and caches from the tree.\nrm -rf build\nrm -rf .cache\n";

fn database(extra: &str) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE snippets (id INTEGER PRIMARY KEY, language TEXT, file_path TEXT, content TEXT, content_hash TEXT);
         CREATE TABLE locations (snippet_id INTEGER, file_path TEXT, line INTEGER);
         {extra}"
    ))
    .unwrap();
    let rows: &[(i64, &str, &str, &str, &str)] = &[
        (1, "python", "app/config.py", DOCUMENTED_PY, "h1"),
        (2, "rust", "core/src/score.rs", DUPLICATED_RS, "h2"),
        (3, "rust", "cli/src/score.rs", DUPLICATED_RS, "h2"),
        (4, "js", "web/a.js", PLAIN_JS, "h3"),
        (5, "cobol", "old/x.cbl", "MOVE A TO B.", "h4"),
        (6, "sh", "scripts/clean.sh", COMMENTED_SH, "h5"),
        (7, "python", "big.py", &"x = 1\n".repeat(5000), "h6"),
        (8, "Python", "empty.py", "   ", "h7"),
    ];
    for r in rows {
        c.execute("INSERT INTO snippets VALUES (?1, ?2, ?3, ?4, ?5)", rusqlite::params![r.0, r.1, r.2, r.3, r.4]).unwrap();
    }
    c.execute("INSERT INTO locations VALUES (2, 'tools/src/score.rs', 12)", []).unwrap();
    c
}

fn run(
    db: rusqlite::Connection,
    cfg: serde_json::Value,
    checkpoint: Option<String>,
) -> (Vec<Example>, BTreeMap<String, u32>, Option<String>) {
    let mut cfg: Config = serde_json::from_value(cfg).unwrap();
    cfg.db = "/data/code_dedup.db".into();
    let mut src = CodeDedup::with_db(Sqlite(db), cfg, checkpoint.as_deref()).unwrap();
    let (mut examples, mut discards, mut ckpt) = (vec![], BTreeMap::new(), checkpoint);
    while let Some(b) = src.next_batch(2).unwrap() {
        assert!(b.examples.len() <= 2);
        examples.extend(b.examples);
        for d in b.discarded {
            *discards.entry(d.reason).or_insert(0) += d.count;
        }
        ckpt = b.checkpoint.or(ckpt);
    }
    (examples, discards, ckpt)
}

#[test]
fn grounded_examples_only() {
    let cfg = json!({ "locations": {}, "page_size": 3 });
    let (examples, discards, ckpt) = run(database(""), cfg, None);
    let summary: Vec<(&str, &str)> = examples.iter().map(|e| (e.provenance.as_str(), e.task.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            ("code_dedup.db#snippets/1", "explain-code"),
            ("code_dedup.db#snippets/1", "write-function"),
            ("code_dedup.db#snippets/2", "write-function"),
            ("code_dedup.db#snippets/2", "find-duplicates"),
            ("code_dedup.db#snippets/6", "explain-code"),
        ]
    );
    let explain = &examples[0];
    assert!(explain.messages[0]
        .content
        .starts_with("Explain what this Python code from `app/config.py` does:\n\n```python\ndef load_config"));
    assert!(!explain.messages[0].content.contains("Load the TOML"), "the answer must not be in the prompt");
    assert_eq!(explain.messages[1].content, "Load the TOML config at `path`, or an empty dict when it is missing.");
    let write = &examples[1];
    assert_eq!(
        write.messages[0].content,
        "Write a Python function `load_config` for this purpose: Load the TOML config at `path`, or an empty dict when it is missing.\n\nSignature: `def load_config(path: str) -> dict`"
    );
    assert!(write.messages[1].content.starts_with("```python\ndef load_config"));
    assert_eq!(examples[2].messages[0].content, "Write the Rust function `pub fn clamp_score(x: f32) -> f32` (clamp score).");
    let dup = &examples[3].messages[1].content;
    assert_eq!(
        dup,
        "It appears in 3 files:\n- `core/src/score.rs`\n- `cli/src/score.rs`\n- `tools/src/score.rs` (line 12)\n\nEach copy defines `clamp_score`. Keeping one `clamp_score` in a module that these files import, and deleting the copies, removes the duplication."
    );
    let meta: serde_json::Value = serde_json::from_str(&examples[3].metadata).unwrap();
    assert_eq!(meta["snippet_id"], 2);
    assert_eq!(meta["file_path"], "core/src/score.rs");

    assert_eq!(discards.get("duplicate_of_earlier_snippet"), Some(&1));
    assert_eq!(discards.get("no_grounded_example"), Some(&1)); // x = 1;
    assert_eq!(discards.get("snippet_too_long"), Some(&1));
    assert_eq!(discards.get("empty_snippet"), Some(&1));
    assert_eq!(discards.get("unsupported_language"), None, "cobol is filtered out by the query");
    assert_eq!(ckpt.as_deref(), Some(r#"{"v":1,"last_id":8}"#));

    // Incremental: nothing new, then one new row.
    let db = database("");
    let (again, _, _) = run(db, json!({}), ckpt.clone());
    assert!(again.is_empty());
    let db = database("");
    db.execute("INSERT INTO snippets VALUES (9, 'bash', 'x.sh', ?1, 'h9')", [COMMENTED_SH.replace("caches", "temp files")]).unwrap();
    let (new, _, _) = run(db, json!({}), ckpt);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].provenance, "code_dedup.db#snippets/9");
}

#[test]
fn languages_and_names_are_configurable() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE code (sid INTEGER, lang TEXT, path TEXT, body TEXT, digest TEXT);").unwrap();
    db.execute("INSERT INTO code VALUES (1, 'rust', 'a.rs', ?1, 'd')", [DUPLICATED_RS]).unwrap();
    db.execute("INSERT INTO code VALUES (2, 'python', 'b.py', ?1, 'e')", [DOCUMENTED_PY]).unwrap();
    let cfg = json!({ "table": "code", "languages": ["rust"],
                      "columns": { "id": "sid", "language": "lang", "file_path": "path", "content": "body", "content_hash": "digest" } });
    let (examples, _, _) = run(db, cfg, None);
    assert_eq!(examples.len(), 1);
    assert_eq!(examples[0].task, "write-function");
}

#[test]
fn missing_tables_and_columns_name_the_config_key() {
    let open = |db: rusqlite::Connection, cfg: serde_json::Value| {
        let mut cfg: Config = serde_json::from_value(cfg).unwrap();
        cfg.db = "/data/x.db".into();
        CodeDedup::with_db(Sqlite(db), cfg, None).err().unwrap()
    };
    let empty = rusqlite::Connection::open_in_memory().unwrap();
    assert_eq!(
        open(empty, json!({})),
        "code-dedup: table \"snippets\" not found in /data/x.db (it has: no tables); set config key `table`"
    );
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE snippets (id INTEGER, language TEXT, file_path TEXT, content TEXT);").unwrap();
    assert_eq!(
        open(db, json!({})),
        "code-dedup: column \"content_hash\" not found in table \"snippets\" (it has: id, language, file_path, content); set config key `columns.content_hash`"
    );
    assert!(open(database(""), json!({ "locations": { "table": "places" } })).contains("set config key `locations.table`"));
    assert!(open(database(""), json!({ "locations": { "snippet_id": "sid" } })).contains("set config key `locations.snippet_id`"));
    assert!(open(database(""), json!({ "languages": ["cobol"] })).contains("unsupported language"));
    let cfg = Config { db: "/x".into(), ..Default::default() };
    assert!(CodeDedup::with_db(Sqlite(database("")), cfg, Some("{bad")).err().unwrap().contains("checkpoint"));
}

#[test]
fn text_ids_and_an_empty_table() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE snippets (id TEXT, language TEXT, file_path TEXT, content TEXT, content_hash TEXT);").unwrap();
    let (examples, discards, ckpt) = run(db, json!({}), None);
    assert!(examples.is_empty() && discards.is_empty() && ckpt.is_none());
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE snippets (id TEXT, language TEXT, file_path TEXT, content TEXT, content_hash TEXT);").unwrap();
    db.execute("INSERT INTO snippets VALUES ('abc', 'bash', 's.sh', ?1, 'h')", [COMMENTED_SH]).unwrap();
    let (examples, _, ckpt) = run(db, json!({}), None);
    assert_eq!(examples.len(), 1);
    assert_eq!(ckpt.as_deref(), Some(r#"{"v":1,"last_id":"abc"}"#));
}
