//! Filter plugin `length`: format sanity — empty turns, unbalanced code fences, truncated
//! responses (ending mid-sentence or mid-code), overlong examples. See README.md.
//!
//! Score 1.0 minus: empty turn 1.0, no assistant turn 1.0, unbalanced fence 0.5, truncated 0.5,
//! too long 0.3. Each of these rejects by default (configurable).

#[path = "../../quality/src/text.rs"]
mod text;

use sam_plugin::filter::{Example, Kind, Role, Verdict};
use serde::Deserialize;

use crate::text::{complexity, looks_truncated, response, unclosed_fence, Tally};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Characters over all messages (and the rejected response) above which `too_long` fires.
    pub max_chars: usize,
    pub reject_too_long: bool,
    pub reject_truncated: bool,
    pub reject_unbalanced_fences: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_chars: 32_000, reject_too_long: true, reject_truncated: true, reject_unbalanced_fences: true }
    }
}

pub struct Length {
    config: Config,
}

impl Length {
    pub fn judge(&self, ex: &Example) -> Verdict {
        let c = &self.config;
        let mut t = Tally::new(1.0);
        let role = |r: Role| match r {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        };
        if let Some((i, m)) = ex.messages.iter().enumerate().find(|(_, m)| m.content.trim().is_empty()) {
            t.fire("empty_turn", -1.0, Some("incomplete"));
            t.reject("empty_turn", format!("message {} ({}) is empty", i + 1, role(m.role)));
        } else if ex.rejected.as_deref().is_some_and(|r| r.trim().is_empty()) {
            t.fire("empty_turn", -1.0, Some("incomplete"));
            t.reject("empty_turn", "the rejected response is empty".into());
        }
        // A principle is a rule the person stated: one user message, no answer by design.
        if ex.kind != Kind::Principle && !ex.messages.iter().any(|m| m.role == Role::Assistant) {
            t.fire("no_response", -1.0, Some("incomplete"));
            t.reject("no_response", "the example has no assistant message".into());
        }
        if let Some((i, m)) = ex.messages.iter().enumerate().find(|(_, m)| unclosed_fence(&m.content)) {
            t.fire("unbalanced_fence", -0.5, Some("incomplete"));
            if c.reject_unbalanced_fences {
                t.reject("unbalanced_fence", format!("message {} ({}) opens a code block it never closes", i + 1, role(m.role)));
            }
        }
        let resp = response(ex);
        if !resp.trim().is_empty() && !unclosed_fence(resp) && looks_truncated(resp) {
            t.fire("truncated", -0.5, Some("incomplete"));
            if c.reject_truncated {
                let tail: String = resp.trim_end().chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
                t.reject("truncated", format!("the response stops mid-sentence: …{tail}"));
            }
        }
        let chars: usize = ex.messages.iter().map(|m| m.content.chars().count()).sum::<usize>()
            + ex.rejected.as_deref().map_or(0, |r| r.chars().count());
        if chars > c.max_chars {
            t.fire("too_long", -0.3, Some("too_long"));
            if c.reject_too_long {
                t.reject("too_long", format!("{chars} characters, over the limit of {}", c.max_chars));
            }
        }
        t.verdict(complexity(ex))
    }
}

impl sam_plugin::Filter for Length {
    fn open(config: serde_json::Value) -> Result<Self, String> {
        let config: Config = serde_json::from_value(config).map_err(|e| format!("length config: {e}"))?;
        Ok(Length { config })
    }

    fn evaluate(&self, example: &Example) -> Verdict {
        self.judge(example)
    }
}

sam_plugin::export_filter!(Length);

#[cfg(test)]
mod tests {

    use sam_plugin::Filter;
    use serde_json::json;

    use super::*;
    use crate::text::example;

    fn judge(ex: &Example) -> Verdict {
        Length { config: Config::default() }.judge(ex)
    }

    #[test]
    fn clean_example_scores_one() {
        let v = judge(&example(Kind::Chat, "Show me a loop.", "Here it is:\n```rust\nfor i in 0..3 {}\n```\nThat prints nothing."));
        assert_eq!(v.score, 1.0);
        assert!(v.reject_reason.is_none() && v.flags.is_empty() && v.fired.is_empty());
        assert_eq!(v.rule, "base");
    }

    #[test]
    fn empty_turns_and_missing_response() {
        let v = judge(&example(Kind::Chat, "  ", "An answer."));
        assert_eq!((v.score, v.rule.as_str()), (0.0, "empty_turn"));
        assert!(v.reject_reason.unwrap().contains("message 1 (user)"));
        let mut ex = example(Kind::Preference, "q", "A fine answer.");
        ex.rejected = Some(String::new());
        assert_eq!(judge(&ex).rule, "empty_turn");
        let mut ex = example(Kind::Chat, "q", "a");
        ex.messages.pop();
        let v = judge(&ex);
        assert_eq!(v.rule, "no_response");
        assert_eq!(v.fired, ["no_response:-1"]);
        let mut principle = example(Kind::Principle, "Always run the tests before committing.", "a");
        principle.messages.pop();
        assert!(judge(&principle).reject_reason.is_none(), "a principle has no answer by design");
    }

    #[test]
    fn unbalanced_fence() {
        let v = judge(&example(Kind::Chat, "q", "Here:\n```rust\nfn main() {\n"));
        assert_eq!(v.rule, "unbalanced_fence");
        assert_eq!(v.fired, ["unbalanced_fence:-0.5"]);
        assert!((v.score - 0.5).abs() < 1e-6);
        assert_eq!(v.flags, ["incomplete"]);
    }

    #[test]
    fn truncated_response() {
        for answer in ["The fix is to close the file and", "The options are:", "It depends on the...", "Set it to x,"] {
            let v = judge(&example(Kind::Chat, "q", answer));
            assert_eq!(v.rule, "truncated", "{answer}");
            assert!((v.score - 0.5).abs() < 1e-6);
        }
        for answer in ["Done.", "Use `cargo test`", "1. build\n2. test", "```sh\nmake\n```"] {
            assert!(judge(&example(Kind::Chat, "q", answer)).reject_reason.is_none(), "{answer}");
        }
        let lenient = Length::open(json!({"reject_truncated": false})).unwrap();
        let v = lenient.evaluate(&example(Kind::Chat, "q", "and so on and"));
        assert!(v.reject_reason.is_none() && v.flags == ["incomplete"]);
    }

    #[test]
    fn too_long() {
        let short_limit = Length::open(json!({"max_chars": 10})).unwrap();
        let v = short_limit.evaluate(&example(Kind::Chat, "question", "a long answer."));
        assert_eq!(v.rule, "too_long");
        assert!((v.score - 0.7).abs() < 1e-6);
        assert!(v.reject_reason.unwrap().contains("over the limit of 10"));
        assert!(Length::open(json!({"typo": true})).is_err());
    }
}
