//! Tries to create `config.dir`/pwned.txt inside its read-only grant.
use sam_plugin::source::{chat, Batch};

struct Writer(String, bool);

impl sam_plugin::Source for Writer {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let dir = config.get("dir").and_then(|v| v.as_str()).ok_or("config needs `dir`")?;
        Ok(Writer(dir.to_string(), false))
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if std::mem::replace(&mut self.1, true) {
            return Ok(None);
        }
        let path = format!("{}/pwned.txt", self.0);
        match std::fs::write(&path, b"pwned") {
            Ok(()) => Ok(Some(Batch {
                examples: vec![chat("escape", "write", "WROTE INTO A READ-ONLY GRANT", "write-readonly#1")],
                discarded: vec![],
                checkpoint: None,
            })),
            Err(e) => Err(format!("cannot write {path}: {e}")),
        }
    }
}
sam_plugin::export_source!(Writer);
