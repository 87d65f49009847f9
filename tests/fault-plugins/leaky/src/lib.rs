//! Hands the host the secret `config.secret` through every channel other than an example's
//! text: log lines (info and warn), a discard reason, the checkpoint, and finally the error
//! message of its second `next`. One clean example rides along so the batch is stored. A log
//! line also carries a terminal escape (a window-title change) and a bidi override.
use sam_plugin::source::{chat, info, warn, Batch, Discard};

struct Leaky {
    secret: String,
    calls: u32,
}

impl sam_plugin::Source for Leaky {
    fn open(config: serde_json::Value, _checkpoint: Option<String>) -> Result<Self, String> {
        let secret = config.get("secret").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok(Leaky { secret, calls: 0 })
    }
    fn next(&mut self, _max: u32) -> Result<Option<Batch>, String> {
        self.calls += 1;
        let s = &self.secret;
        if self.calls > 1 {
            return Err(format!("giving up; the key was {s}"));
        }
        info(&format!("using key {s}"));
        warn(&format!("key {s} looks old"));
        warn("title \x1b]0;pwned\x07 and \u{202E}desrever");
        Ok(Some(Batch {
            examples: vec![chat("leak", "What is two plus two?", "Two plus two is four.", "leaky#0")],
            discarded: vec![Discard { reason: format!("skipped because of {s}"), count: 1 }],
            checkpoint: Some(format!("cursor {s}")),
        }))
    }
}
sam_plugin::export_source!(Leaky);
