//! A filter that blocks in `wasi:io/poll` (a long sleep) on every evaluation.
use sam_plugin::filter::{Example, Verdict};

struct Sleepy;

impl sam_plugin::Filter for Sleepy {
    fn open(_config: serde_json::Value) -> Result<Self, String> {
        Ok(Sleepy)
    }
    fn evaluate(&self, _e: &Example) -> Verdict {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Verdict { score: 1.0, flags: vec![], complexity: 1, reject_reason: None, rule: "never".into(), fired: vec![] }
    }
}
sam_plugin::export_filter!(Sleepy);
