//! Scores an example by the length of its last message: min(1, chars / 100).
use sam_plugin::filter::{Example, Verdict};

struct Length;

impl sam_plugin::Filter for Length {
    fn open(_config: serde_json::Value) -> Result<Self, String> {
        Ok(Length)
    }
    fn evaluate(&self, e: &Example) -> Verdict {
        let n = e.messages.last().map(|m| m.content.chars().count()).unwrap_or(0);
        let score = (n as f32 / 100.0).min(1.0);
        Verdict {
            score,
            flags: if n < 10 { vec!["too_short".into()] } else { vec![] },
            complexity: (1 + n / 100).min(10) as u8,
            reject_reason: None,
            rule: "length".into(),
            fired: vec![],
        }
    }
}
sam_plugin::export_filter!(Length);
