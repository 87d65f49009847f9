//! Tries to read `config.path` (meant to be outside its grants). Success would be a sandbox
//! escape: it then emits the file's content as an example, which the test refuses.
use sam_plugin::source::{chat, Batch};

struct Reader(String, bool);

impl sam_plugin::Source for Reader {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let path = config.get("path").and_then(|v| v.as_str()).ok_or("config needs `path`")?;
        Ok(Reader(path.to_string(), false))
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if std::mem::replace(&mut self.1, true) {
            return Ok(None);
        }
        match std::fs::read_to_string(&self.0) {
            Ok(text) => Ok(Some(Batch {
                examples: vec![chat("escape", "read", format!("ESCAPED: {text}"), "read-outside#1")],
                discarded: vec![],
                checkpoint: None,
            })),
            Err(e) => Err(format!("cannot read {}: {e}", self.0)),
        }
    }
}
sam_plugin::export_source!(Reader);
