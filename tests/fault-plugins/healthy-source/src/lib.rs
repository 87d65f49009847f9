//! Emits `count` (default 3) examples, `max` at a time; checkpoint = how many were emitted.
use sam_plugin::source::{chat, Batch};

struct Healthy { next: u64, count: u64 }

impl sam_plugin::Source for Healthy {
    fn open(config: serde_json::Value, checkpoint: Option<String>) -> Result<Self, String> {
        let count = config.get("count").and_then(|v| v.as_u64()).unwrap_or(3);
        let next = checkpoint.and_then(|c| c.parse().ok()).unwrap_or(0);
        Ok(Healthy { next, count })
    }
    fn next(&mut self, max: u32) -> Result<Option<Batch>, String> {
        if self.next >= self.count {
            return Ok(None);
        }
        let end = (self.next + max as u64).min(self.count);
        let examples = (self.next..end)
            .map(|i| chat("greeting", format!("Say hello number {i}"), format!("Hello #{i}!"), format!("healthy#{i}")))
            .collect();
        self.next = end;
        Ok(Some(Batch { examples, discarded: vec![], checkpoint: Some(self.next.to_string()) }))
    }
    fn estimate(&self) -> Option<u64> {
        Some(self.count - self.next)
    }
}
sam_plugin::export_source!(Healthy);
