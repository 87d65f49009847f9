//! A filter that hands the host the secret `config.secret` in its verdicts — the reject reason,
//! a flag, the rule and a fired entry — and in a log line. It rejects every example.
use sam_plugin::filter::{log, Example, Verdict};

struct LeakyFilter {
    secret: String,
}

impl sam_plugin::Filter for LeakyFilter {
    fn open(config: serde_json::Value) -> Result<Self, String> {
        Ok(LeakyFilter { secret: config.get("secret").and_then(|v| v.as_str()).unwrap_or_default().to_string() })
    }
    fn evaluate(&self, _e: &Example) -> Verdict {
        let s = &self.secret;
        log::log(log::Level::Warn, &format!("judging with {s}"));
        Verdict {
            score: 0.0,
            flags: vec![format!("flag-{s}")],
            complexity: 1,
            reject_reason: Some(format!("rejected: it mentions {s}")),
            rule: format!("rule {s}"),
            fired: vec![format!("fired {s}")],
        }
    }
}
sam_plugin::export_filter!(LeakyFilter);
