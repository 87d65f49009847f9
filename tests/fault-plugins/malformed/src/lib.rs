//! Returns one malformed batch; `config.mode` picks the defect: `empty-messages` (default),
//! `metadata` (not a JSON object), `huge` (a 2 MiB message), `too-many` (more than `max`).
use sam_plugin::source::{chat, Batch};

struct Bad(String);

impl sam_plugin::Source for Bad {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        Ok(Bad(config.get("mode").and_then(|v| v.as_str()).unwrap_or("empty-messages").to_string()))
    }
    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        let mut e = chat("t", "prompt", "answer", "malformed#1");
        let mut examples = vec![];
        match self.0.as_str() {
            "metadata" => e.metadata = "[1, 2, 3]".into(),
            "huge" => e.messages[1].content = "x".repeat(2 << 20),
            "too-many" => {
                for i in 0..=max {
                    examples.push(chat("t", "p", "a", format!("malformed#{i}")));
                }
            }
            _ => e.messages.clear(),
        }
        if examples.is_empty() {
            examples.push(e);
        }
        Ok(Some(Batch { examples, discarded: vec![], checkpoint: None }))
    }
}
sam_plugin::export_source!(Bad);
