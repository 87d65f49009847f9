use sam_plugin::filter::{Kind, Message, Role};
use sam_plugin::Filter;
use serde_json::json;

use super::*;
use crate::text::example;

fn judge(kind: Kind, answer: &str) -> Verdict {
    Quality::new(Config::default()).judge(&example(kind, "How do I rename my profile?", answer))
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-4
}

/// ≥ 100 characters, two reasoning steps, nothing else fires.
const GOOD: &str =
    "First, open the settings panel from the menu at the top. Then, choose the profile tab, type the new name and press save.";

#[test]
fn reasoning_bonus() {
    assert!(GOOD.len() >= 100);
    let v = judge(Kind::Chat, GOOD);
    assert!(close(v.score, 0.6), "{v:?}");
    assert_eq!(v.rule, "reasoning");
    assert_eq!(v.fired, ["reasoning:+0.1"]);
    assert!(v.flags.is_empty() && v.reject_reason.is_none());
    assert_eq!(v.complexity, 2);
}

#[test]
fn correction_bonus_by_kind_phrase_or_metadata() {
    let v = judge(Kind::Correction, GOOD);
    assert!(close(v.score, 0.75), "{v:?}");
    assert_eq!(v.rule, "correction");
    assert_eq!(v.fired, ["reasoning:+0.1", "correction:+0.15"]);
    assert_eq!(v.complexity, 3);
    let v = judge(Kind::Chat, &format!("I was wrong earlier. {GOOD}"));
    assert!(close(v.score, 0.75), "{v:?}");
    let mut ex = example(Kind::Chat, "q", GOOD);
    ex.metadata = json!({"correction": true}).to_string();
    assert!(close(Quality::new(Config::default()).judge(&ex).score, 0.75));
}

#[test]
fn principles_bonus_by_statement_or_metadata() {
    let v = judge(Kind::Chat, &format!("{GOOD}\nAlways keep a backup of the old name."));
    assert!(close(v.score, 0.7), "{v:?}");
    assert!(v.fired.contains(&"principles:+0.1".to_string()));
    let mut ex = example(Kind::Chat, "q", GOOD);
    ex.metadata = json!({"principles": ["prefer small commits"]}).to_string();
    assert!(close(Quality::new(Config::default()).judge(&ex).score, 0.7));
}

#[test]
fn complexity_bonus() {
    let filler: Vec<String> = (0..150).map(|i| format!("note{i}")).collect();
    let answer = format!(
        "First, we measure the cache latency. Then, we look at the thread pool.\n```rust\nfn main() {{}}\n```\n{}.",
        filler.join(" ")
    );
    let v = judge(Kind::Chat, &answer);
    assert!(v.complexity >= 5, "{v:?}");
    assert!(close(v.score, 0.65), "{v:?}");
    assert_eq!(v.fired, ["reasoning:+0.1", "complexity:+0.05"]);
}

#[test]
fn too_short_and_no_reasoning_sink_below_the_reject_line() {
    let answer = "Use the save button in the top right corner of the profile page now.";
    assert!((50..100).contains(&answer.len()));
    let v = judge(Kind::Chat, answer);
    assert!(close(v.score, 0.2), "{v:?}");
    assert_eq!(v.flags, ["too_short", "no_reasoning"]);
    assert_eq!(v.fired, ["too_short:-0.2", "no_reasoning:-0.1"]);
    assert_eq!(v.rule, "low_score");
    assert!(v.reject_reason.unwrap().contains("below 0.30"));
}

#[test]
fn under_fifty_characters_is_rejected() {
    let v = judge(Kind::Chat, "Click save.");
    assert_eq!(v.rule, "too_short");
    assert!(close(v.score, 0.2));
    assert!(v.reject_reason.unwrap().contains("11 characters"));
}

#[test]
fn direct_answer_without_reasoning() {
    let answer = "Open the settings panel from the menu at the top, choose the profile tab, type the new name and press save.";
    assert!(answer.len() >= 100);
    let v = judge(Kind::Chat, answer);
    assert!(close(v.score, 0.4), "{v:?}");
    assert_eq!(v.rule, "no_reasoning");
    assert_eq!(v.flags, ["no_reasoning"]);
    assert!(v.reject_reason.is_none());
}

#[test]
fn repetitive_response_is_penalized_then_rejected() {
    // Some repetition: between 20 % and 40 % of trigrams repeat.
    let answer = format!("{GOOD} Then, choose the profile tab, type the new name and press save again.");
    let r = repetition_ratio(&answer.to_lowercase());
    assert!(r > 0.2 && r <= 0.4, "ratio {r}");
    let v = judge(Kind::Chat, &answer);
    assert!(close(v.score, 0.3), "{v:?}");
    assert!(v.flags.contains(&"repetition".to_string()));
    assert_eq!(v.rule, "repetition");
    assert!(v.reject_reason.is_none());
    // Mostly repetition: rejected whatever the score.
    let answer = "First, the same line again. Then, the same line again. ".repeat(10);
    let v = judge(Kind::Chat, &answer);
    assert_eq!(v.rule, "repetition");
    assert!(v.reject_reason.unwrap().contains("limit 40 %"));
}

#[test]
fn incomplete_response() {
    for answer in [
        format!("{GOOD} After that, check the"),
        format!("{GOOD} Here is the config:\n```toml\nname = 1\n"),
        format!("{GOOD} And the rest..."),
    ] {
        let v = judge(Kind::Chat, &answer);
        assert!(v.flags.contains(&"incomplete".to_string()), "{answer}: {v:?}");
        assert!(v.fired.contains(&"incomplete:-0.2".to_string()));
    }
    let v = judge(Kind::Chat, &format!("{GOOD} After that, check the"));
    assert!(close(v.score, 0.4), "{v:?}");
}

/// Flags without score changes: the score stays that of GOOD (0.6) unless the flag rejects.
#[test]
fn flags_only_rules() {
    let long = Quality::new(Config {
        long_chars: 50,
        ..Default::default()
    });
    let v = long.judge(&example(Kind::Chat, "q", GOOD));
    assert!(
        v.flags == ["too_long"] && close(v.score, 0.6) && v.fired.contains(&"too_long:0".to_string()),
        "{v:?}"
    );

    let code = "```python\ndef rename(user, name):\n    user.name = name\n    user.save()\n    return user\n```";
    let v = judge(Kind::Chat, code);
    assert!(v.flags.contains(&"code_only".to_string()), "{v:?}");

    let v = judge(Kind::Chat, &format!("I think this works, but I'm not sure. {GOOD}"));
    assert!(v.flags == ["uncertain"] && close(v.score, 0.6), "{v:?}");

    let v = judge(Kind::Chat, &format!("As of my last update this was true. {GOOD}"));
    assert!(v.flags == ["outdated"] && close(v.score, 0.6), "{v:?}");

    let v = judge(Kind::Chat, &format!("{GOOD} Studies show people rename twice a year."));
    assert!(v.flags == ["hallucination_risk"] && close(v.score, 0.6), "{v:?}");
    let v = judge(Kind::Chat, &format!("{GOOD} See https://docs.invented.example/rename for more."));
    assert!(v.flags == ["hallucination_risk"], "{v:?}");
    // A link the prompt gave is not invented.
    let ex = example(
        Kind::Chat,
        "Read https://wiki.local/rename and tell me.",
        &format!("{GOOD} See https://wiki.local/rename."),
    );
    assert!(Quality::new(Config::default()).judge(&ex).flags.is_empty());
}

#[test]
fn refusal_is_rejected() {
    let v = judge(Kind::Chat, &format!("I'm sorry, but I can't do that. {GOOD}"));
    assert_eq!(v.rule, "refusal");
    assert!(v.flags.contains(&"refusal".to_string()));
    assert_eq!(v.reject_reason.as_deref(), Some("the response is a refusal"));
}

#[test]
fn skipped_kinds_and_tasks_get_the_base_score() {
    let v = judge(Kind::Routing, "local");
    assert!(close(v.score, 0.5) && v.rule == "not_scored" && v.reject_reason.is_none(), "{v:?}");
    let mut ex = example(Kind::Chat, "diff", "Fix typo");
    ex.task = "commit-message".into();
    assert_eq!(Quality::new(Config::default()).judge(&ex).rule, "not_scored");
    let strict = Quality::new(Config {
        skip_tasks: vec![],
        ..Default::default()
    });
    assert_eq!(strict.judge(&ex).rule, "too_short");
}

#[test]
fn config_is_checked_and_thresholds_apply() {
    assert!(Quality::open(json!({"base": 0.6, "typo": 1})).is_err());
    let q = Quality::open(json!({"base": 0.6, "reject_below": 0.5, "weights": {"no_reasoning": -0.2}})).unwrap();
    let answer = "Open the settings panel from the menu at the top, choose the profile tab, type the new name and press save.";
    let v = q.evaluate(&example(Kind::Chat, "q", answer));
    assert!(close(v.score, 0.4), "{v:?}");
    assert_eq!(v.rule, "low_score");
    assert!(Quality::open(json!({})).is_ok());
}

#[test]
fn complexity_stays_in_range() {
    assert_eq!(judge(Kind::Chat, "ok").complexity, 1);
    let big = format!(
        "{}\n```rust\nfn a() {{}}\n```\n```rust\nfn b() {{}}\n```\n```rust\nfn c() {{}}\n```\n",
        "First, the cache. Then, the thread. Because of the lock, the memory and the database index change. ".repeat(60)
    );
    let mut ex = example(Kind::Correction, &big, &big);
    ex.messages.push(Message {
        role: Role::User,
        content: "and the async part?".into(),
    });
    ex.messages.push(Message {
        role: Role::Assistant,
        content: big.clone(),
    });
    assert_eq!(Quality::new(Config::default()).judge(&ex).complexity, 10);
}
