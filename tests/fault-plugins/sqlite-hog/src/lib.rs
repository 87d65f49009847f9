//! Runs `config.sql` on the granted database `config.db` in its first `next`, then `config.then`
//! (if given) on the same connection: huge values (`zeroblob(2e9)`), runaway recursive CTEs, or a
//! transaction it tries to keep open (`BEGIN`, then a read). Reports what came back as an example.
use sam_plugin::source::sqlite::Connection;
use sam_plugin::source::{chat, Batch};

struct Hog {
    db: String,
    sql: Vec<String>,
    done: bool,
}

impl sam_plugin::Source for Hog {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let s = |k: &str| config.get(k).and_then(|v| v.as_str()).map(String::from);
        let sql = [s("sql"), s("then")].into_iter().flatten().collect();
        Ok(Hog { db: s("db").unwrap_or_default(), sql, done: false })
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let conn = Connection::open(&self.db)?;
        let mut answers = Vec::new();
        for sql in &self.sql {
            let rows = conn.query(sql, &[])?;
            answers.push(format!("{} rows", rows.rows.len()));
        }
        let example = chat("sqlite", "What did the queries return?", answers.join(", "), "sqlite-hog#0");
        Ok(Some(Batch { examples: vec![example], discarded: vec![], checkpoint: None }))
    }
}
sam_plugin::export_source!(Hog);
