//! Floods every channel it has without failing: `batches` (default 20) batches, each with one
//! example, 256 discard reasons never used before, and `lines` (default 1000) log lines.
use sam_plugin::source::{chat, info, Batch, Discard};

struct Flood {
    batch: u64,
    batches: u64,
    lines: u64,
}

impl sam_plugin::Source for Flood {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let get = |k: &str, d: u64| config.get(k).and_then(|v| v.as_u64()).unwrap_or(d);
        Ok(Flood { batch: 0, batches: get("batches", 20), lines: get("lines", 1000) })
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        if self.batch >= self.batches {
            return Ok(None);
        }
        let b = self.batch;
        self.batch += 1;
        for i in 0..self.lines {
            info(&format!("flood line {b}/{i}"));
        }
        let discarded = (0..256).map(|i| Discard { reason: format!("reason {b}-{i}"), count: 2 }).collect();
        let example = chat("flood", format!("Flood question {b}"), format!("Flood answer number {b}."), format!("flood#{b}"));
        Ok(Some(Batch { examples: vec![example], discarded, checkpoint: Some(self.batch.to_string()) }))
    }
}
sam_plugin::export_source!(Flood);
